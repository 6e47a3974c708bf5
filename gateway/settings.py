"""Gateway settings: environment variables with the GATEWAY_ prefix, each also a CLI option."""

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from routers.registry import parse_options


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="forbid")

    replicas: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated replica base URLs."
    )
    replicas_file: Path | None = Field(
        None, description="YAML list of replicas: url, optional name and models."
    )
    discovery: Literal["none", "admin", "k8s"] = Field(
        "none",
        description=(
            "Replicas beyond the configured ones: none; admin (POST /admin/replicas only, "
            "may start with none); k8s (the EndpointSlices of GATEWAY_K8S_SERVICE)."
        ),
    )
    k8s_service: str | None = Field(
        None, description="The Kubernetes Service whose ready endpoints are the replicas."
    )
    k8s_namespace: str | None = Field(
        None, description="Its namespace (default: the gateway pod's own, else default)."
    )
    k8s_port: str | None = Field(
        None, description="The Service port's name to use (default: its only or first port)."
    )
    strategy: str = Field("round_robin", description="Routing strategy (entry-point name).")
    strategy_options: Annotated[dict[str, Any], NoDecode] = Field(
        default_factory=dict,
        description="The strategy's options: a JSON object or key=value,key=value.",
    )
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8080, ge=1, le=65535, description="Port to listen on.")
    poll_interval: float = Field(1.0, gt=0, description="Seconds between /metrics scrapes.")
    health_interval: float = Field(2.0, gt=0, description="Seconds between /health checks.")
    connect_timeout: float = Field(2.0, gt=0, description="Seconds to connect to a replica.")
    first_byte_timeout: float = Field(
        300.0, gt=0, description="Seconds to wait for a replica's response headers."
    )
    idle_timeout: float = Field(
        120.0, gt=0, description="Seconds a stream may stay silent before it is cut."
    )
    max_body_bytes: int = Field(
        16 * 1024 * 1024, gt=0, description="Largest request body accepted (bytes)."
    )
    read_timeout: float = Field(
        60.0, gt=0, description="Seconds a client has to send a request's headers and body."
    )
    send_timeout: float = Field(
        60.0,
        gt=0,
        description="Seconds a client may leave the answer unread (buffers full) before it is cut.",
    )
    max_connections: int = Field(4096, ge=1, description="Most client connections open at once.")
    max_requests: int | None = Field(
        None, ge=1, description="Most relayed requests open at once, all clients together."
    )
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Comma-separated keys clients must send as Bearer."
    )
    api_keys_file: Path | None = Field(
        None, description="YAML list of client keys with names and limits; re-read on change."
    )
    key_rate: float | None = Field(
        None, gt=0, description="Requests per second per client key (keys without their own)."
    )
    key_concurrency: int | None = Field(
        None, ge=1, description="Requests open at once per client key (keys without their own)."
    )
    admin_key: SecretStr | None = Field(
        None, description="Bearer key for /admin (open when unset)."
    )
    allow_open_admin: bool = Field(
        False, description="Start on a non-loopback address even with /admin open (no key)."
    )
    log_level: str = Field("info", description="debug, info, warning or error.")
    workers: int = Field(
        1,
        ge=1,
        description=(
            "Processes sharing the port, each with its own pool, strategy and limits "
            "(docs/gateway.md, Several workers)."
        ),
    )

    @field_validator("replicas", "api_keys", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("strategy_options", mode="before")
    @classmethod
    def _parse_options(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_options(value)  # StrategyOptionsError is a ValueError: one line
        return value

    @model_validator(mode="after")
    def _needs_replicas(self) -> "GatewaySettings":
        if not self.replicas and self.replicas_file is None and self.discovery == "none":
            raise ValueError(
                "no replicas: set GATEWAY_REPLICAS (comma-separated URLs) "
                "or GATEWAY_REPLICAS_FILE (YAML), or GATEWAY_DISCOVERY (admin or k8s)"
            )
        if self.discovery == "k8s" and not self.k8s_service:
            raise ValueError(
                "GATEWAY_DISCOVERY=k8s needs GATEWAY_K8S_SERVICE: the name of the Service "
                "whose endpoints are the replicas"
            )
        self._fits_workers()
        return self

    def _fits_workers(self) -> None:
        """Refuse what several workers would only half do: each has its own pool and limits."""
        if self.workers == 1:
            return
        if self.discovery == "admin":
            raise ValueError(
                f"GATEWAY_DISCOVERY=admin needs GATEWAY_WORKERS=1: with {self.workers} workers "
                "POST /admin/replicas would add the replica to one worker only"
            )
        if self.key_rate is not None or self.key_concurrency is not None:
            raise ValueError(
                "GATEWAY_KEY_RATE and GATEWAY_KEY_CONCURRENCY need GATEWAY_WORKERS=1: "
                f"each of {self.workers} workers would count on its own, allowing up to "
                f"{self.workers} times the limit"
            )

    def api_key_values(self) -> list[str]:
        return [key.get_secret_value() for key in self.api_keys]

    def admin_key_value(self) -> str | None:
        """The admin key, or None when unset (an empty value is unset too)."""
        key = self.admin_key.get_secret_value() if self.admin_key is not None else ""
        return key or None
