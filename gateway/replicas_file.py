"""The replica list from settings: GATEWAY_REPLICAS (URLs) or GATEWAY_REPLICAS_FILE (YAML).

The file is either a list or a mapping with a `replicas` list; each entry has `url` and
optionally `name` and `models`:

    replicas:
      - url: http://10.0.0.1:8000
        name: llama-0
        models: [meta-llama/Llama-3.1-8B-Instruct]
        api_key: ...          # optional: sent as Bearer (vLLM --api-key); never shown or logged
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from gateway.pool import Replica
from gateway.settings import GatewaySettings


class ConfigError(ValueError):
    """The gateway cannot start with this configuration; the message says why."""


@dataclass(frozen=True)
class ReplicaEntry:
    name: str
    url: str
    models: tuple[str, ...] = ()
    api_key: str | None = field(default=None, repr=False)

    def to_replica(self) -> Replica:
        return Replica(
            id=self.name,
            url=self.url,
            models=self.models,
            models_pinned=bool(self.models),
            api_key=self.api_key,
        )


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str
    name: str | None = None
    models: list[str] | None = None
    api_key: SecretStr | None = None


def normalize_url(url: str) -> tuple[str, str]:
    """(base URL without trailing slash, default name host:port), or ConfigError."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"replica URL {url!r} is not an http(s)://host:port URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ConfigError(f"replica URL {url!r} has a bad port") from exc
    if parts.username is not None or parts.password is not None:
        # The URL is shown in /admin and in logs; a key belongs in api_key.
        raise ConfigError(
            f"replica URL {parts.scheme}://...@{parts.hostname}: credentials in a URL are "
            "not allowed; give the replica's key as api_key in the replicas file"
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"replica URL {url!r} must not have a query or fragment")
    base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
    return base, f"{parts.hostname}:{port}"


def _from_urls(urls: list[str]) -> list[ReplicaEntry]:
    specs = []
    for url in urls:
        base, name = normalize_url(url)
        specs.append(ReplicaEntry(name=name, url=base))
    return specs


def _from_file(path: Path) -> list[ReplicaEntry]:
    try:
        data: Any = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"replicas file {path}: cannot read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"replicas file {path}: not valid YAML ({exc})".replace("\n", " ")
        ) from exc
    if isinstance(data, dict) and set(data) == {"replicas"}:
        data = data["replicas"]
    if not isinstance(data, list):
        raise ConfigError(
            f"replicas file {path}: expected a list of replicas (or a mapping with a "
            "'replicas' list), each with url and optional name and models"
        )
    specs = []
    for i, raw in enumerate(data):
        try:
            entry = _Entry.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'entry'}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(
                f"replicas file {path}: replica {i}: {problems} "
                "(allowed keys: url, name, models, api_key)"
            ) from exc
        base, default_name = normalize_url(entry.url)
        specs.append(
            ReplicaEntry(
                name=entry.name or default_name,
                url=base,
                models=tuple(entry.models or ()),
                api_key=entry.api_key.get_secret_value() if entry.api_key else None,
            )
        )
    return specs


def load_replica_specs(settings: GatewaySettings) -> list[ReplicaEntry]:
    """The configured replicas (the file, when given, wins over the URL list)."""
    if settings.replicas_file is not None:
        specs = _from_file(settings.replicas_file)
    else:
        specs = _from_urls(settings.replicas)
    if not specs:
        raise ConfigError(
            "no replicas: set GATEWAY_REPLICAS (comma-separated URLs) "
            "or GATEWAY_REPLICAS_FILE (YAML)"
        )
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(
            f"duplicate replica names: {', '.join(duplicates)} (names must be unique)"
        )
    return specs
