"""The replica list from settings: GATEWAY_REPLICAS (URLs) or GATEWAY_REPLICAS_FILE (YAML).

The file is either a list or a mapping with a `replicas` list; each entry has `url` and
optionally `name`, `kind`, `models`, `aliases` and `api_key_env`:

    replicas:
      - url: http://10.0.0.1:8000
        name: llama-0
        kind: vllm
        models: [meta-llama/Llama-3.1-8B-Instruct]
      - url: http://10.0.0.9:11434
        kind: ollama
        aliases: {meta-llama/Llama-3.1-8B-Instruct: "llama3.1:8b-instruct-fp16"}
      - url: https://api.example.com
        kind: openai
        api_key_env: EXAMPLE_API_KEY  # or api_key: the key itself (vLLM --api-key)

`aliases` maps the public model name clients use to the replica's own name for it (an
Ollama tag, a llama.cpp model path); `models` are the replica's own names. A kind that is
not given is detected from what the server answers (gateway/kinds.py).
"""

import asyncio
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from gateway.kinds import KINDS, Detection, detect, mismatch
from gateway.settings import GatewaySettings
from gateway.upstream import Upstream

ALLOWED_KEYS = "url, name, kind, models, aliases, api_key, api_key_env"


class ConfigError(ValueError):
    """The gateway cannot start with this configuration; the message says why."""


class EntryError(ConfigError):
    """One replica entry is wrong: `detail` says how; `name`, when known, is whose."""

    def __init__(self, detail: str, name: str | None = None) -> None:
        super().__init__(detail if name is None else f"{name}: {detail}")
        self.detail = detail
        self.name = name


@dataclass(frozen=True)
class ReplicaEntry:
    name: str
    url: str
    models: tuple[str, ...] = ()
    kind: str | None = None
    # (public name, the replica's own name), sorted.
    aliases: tuple[tuple[str, str], ...] = ()
    # Read from the variable api_key_env names; never shown (repr) nor logged.
    api_key: str | None = field(default=None, repr=False)
    # The server answered and its answers fit `kind` (set by detection at start-up).
    kind_verified: bool = False

    def to_replica(self) -> Upstream:
        replica = Upstream(
            id=self.name,
            url=self.url,
            models_pinned=bool(self.models),
            aliases=dict(self.aliases),
            authorization=None if self.api_key is None else f"Bearer {self.api_key}".encode(),
            kind_verified=self.kind_verified,
        )
        replica.set_kind(None if self.kind is None else KINDS[self.kind])
        replica.models = tuple(sorted(replica.public_names(self.models)))
        return replica


class EntryBody(BaseModel):
    """One replica of a replicas file; also the body of POST /admin/replicas."""

    model_config = ConfigDict(extra="forbid")
    url: str
    name: str | None = None
    kind: str | None = None
    models: list[str] | None = None
    aliases: dict[str, str] | None = None
    api_key_env: str | None = None
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
            "'replicas' list), each with url and optional name, kind, models, aliases, "
            "api_key_env"
        )
    specs = []
    for i, raw in enumerate(data):
        try:
            specs.append(parse_entry(raw))
        except EntryError as exc:
            whose = f"replica {i}" if exc.name is None else f"replica {i} ({exc.name})"
            raise ConfigError(f"replicas file {path}: {whose}: {exc.detail}") from None
    try:
        check_alias_clashes(specs)
    except ConfigError as exc:
        raise ConfigError(f"replicas file {path}: {exc}") from None
    return specs


def parse_entry(raw: Any) -> ReplicaEntry:
    """One replica as a file or the admin API gives it; EntryError (one line) otherwise."""
    try:
        entry = EntryBody.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'entry'}: {e['msg']}" for e in exc.errors()
        )
        raise EntryError(f"{problems} (allowed keys: {ALLOWED_KEYS})") from exc
    try:
        base, default_name = normalize_url(entry.url)
    except ConfigError as exc:
        raise EntryError(str(exc)) from None
    name = entry.name or default_name
    try:
        return _entry(entry, name, base)
    except ConfigError as exc:
        raise EntryError(str(exc), name) from None


def _entry(entry: EntryBody, name: str, url: str) -> ReplicaEntry:
    if entry.kind is not None and entry.kind not in KINDS:
        raise ConfigError(f"unknown kind {entry.kind!r}; allowed: {', '.join(KINDS)}")
    models = tuple(entry.models or ())
    aliases = tuple(sorted((entry.aliases or {}).items()))
    _check_aliases(aliases, models)
    api_key = entry.api_key.get_secret_value() if entry.api_key else None
    if entry.api_key is not None and entry.api_key_env is not None:
        raise ConfigError("give api_key or api_key_env, not both")
    if entry.api_key_env is not None:
        api_key = os.environ.get(entry.api_key_env, "")
        if not api_key:
            raise ConfigError(
                f"api_key_env: the variable {entry.api_key_env} is not set (or empty); "
                "export the replica's API key under that name"
            )
    if api_key is not None and not api_key.isprintable():
        # It goes into a request header: a line break would end the header there.
        raise ConfigError("api_key: the key has control characters (a line break?)")
    return ReplicaEntry(
        name=name, url=url, models=models, kind=entry.kind, aliases=aliases, api_key=api_key
    )


def _check_aliases(aliases: tuple[tuple[str, str], ...], models: tuple[str, ...]) -> None:
    """One replica's aliases: each public name has a model of its own, and no name is both."""
    owners: dict[str, str] = {}
    for public, own in aliases:
        if not public or not own:
            raise ConfigError("aliases: names must not be empty")
        if own in owners:
            raise ConfigError(
                f"aliases: {owners[own]!r} and {public!r} both map to {own!r} "
                "(a model gets one public name per replica)"
            )
        owners[own] = public
        if models and own not in models:
            raise ConfigError(f"aliases: {public!r} maps to {own!r}, which is not in models")
    for public, _ in aliases:
        if public in owners:
            raise ConfigError(
                f"aliases: {public!r} is a public name and also the own name behind "
                f"alias {owners[public]!r} (aliases do not chain)"
            )
        if public in models:
            raise ConfigError(
                f"aliases: {public!r} is also in models, served under its own name "
                "(the alias would hide that model)"
            )


def check_alias_clashes(specs: list[ReplicaEntry]) -> None:
    """Across replicas: a name one replica hides behind an alias must not be the public
    alias of another model elsewhere, or one name would mean two models."""
    clash = alias_clash([(spec.name, spec.aliases) for spec in specs])
    if clash is not None:
        raise ConfigError(clash)


def alias_clash(replicas: list[tuple[str, tuple[tuple[str, str], ...]]]) -> str | None:
    """What check_alias_clashes refuses, over (name, aliases) pairs; None when fine."""
    hidden: dict[str, list[str]] = {}
    for name, aliases in replicas:
        for _, own in aliases:
            hidden.setdefault(own, []).append(name)
    for name, aliases in replicas:
        for public, own in aliases:
            others = [other for other in hidden.get(public, ()) if other != name]
            if others:
                return (
                    f"replica {name}: alias {public!r} (for {own!r}) is a name replica "
                    f"{others[0]} hides behind another alias; one name must mean one model"
                )
    return None


def load_replica_specs(settings: GatewaySettings) -> list[ReplicaEntry]:
    """The configured replicas (the file, when given, wins over the URL list)."""
    if settings.replicas_file is not None:
        specs = _from_file(settings.replicas_file)
    else:
        specs = _from_urls(settings.replicas)
    if not specs and settings.discovery == "none":
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


async def identify_kinds(specs: list[ReplicaEntry], probe_timeout: float) -> list[ReplicaEntry]:
    """Ask every replica what it is (concurrently; each GET bounded by `probe_timeout`): a kind
    not given is filled in, a given one is checked. ConfigError, naming the replica, when
    a server's answers contradict its configured kind. A replica that does not answer yet
    keeps what it had, and is identified by the health checks once it does."""
    async with httpx.AsyncClient(timeout=probe_timeout) as client:
        found = await asyncio.gather(*(_identify(client, spec, probe_timeout) for spec in specs))
    resolved = []
    for spec, detection in zip(specs, found, strict=True):
        if detection is None:
            resolved.append(spec)
            continue
        if spec.kind is not None:
            problem = mismatch(KINDS[spec.kind], detection)
            if problem is not None:
                raise ConfigError(f"replica {spec.name} ({spec.url}): {problem}")
        resolved.append(replace(spec, kind=spec.kind or detection.kind, kind_verified=True))
    return resolved


async def _identify(
    client: httpx.AsyncClient, spec: ReplicaEntry, probe_timeout: float
) -> Detection | None:
    headers = {} if spec.api_key is None else {"authorization": f"Bearer {spec.api_key}"}

    async def get(path: str) -> httpx.Response:
        async with asyncio.timeout(probe_timeout):
            return await client.get(spec.url + path, headers=headers)

    return await detect(get)
