"""Gateway settings: environment variables with the GATEWAY_ prefix, each also a CLI option."""

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
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
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated keys clients must send as Bearer."
    )
    admin_key: str | None = Field(None, description="Bearer key for /admin (open when unset).")
    log_level: str = Field("info", description="debug, info, warning or error.")

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
        if not self.replicas and self.replicas_file is None:
            raise ValueError(
                "no replicas: set GATEWAY_REPLICAS (comma-separated URLs) "
                "or GATEWAY_REPLICAS_FILE (YAML)"
            )
        return self
