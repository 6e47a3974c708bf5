"""Client keys: who may use /v1, under which name, with which limits.

Keys come from GATEWAY_API_KEYS (comma-separated; each named `key-` and the first 8 hex
digits of its SHA-256) and from GATEWAY_API_KEYS_FILE, a YAML file re-read when it changes:

    keys:
      - key: sk-team-a-...        # or key_sha256: <64 hex digits>, to keep the key out of the file
        name: team-a              # in logs and metrics; default key-<8 hex>
        rate: 5                   # requests per second, sustained (optional)
        burst: 10                 # requests above the rate at once (optional; default: rate)
        concurrency: 4            # requests open at once (optional)

Keys are held only as SHA-256 digests and looked up by digest: one hash and one dict
lookup per request however many keys there are, and a lookup's timing says nothing
about a key (unlike comparing the keys themselves).
"""

import asyncio
import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.errors import Unauthorized

_HEX64 = re.compile(r"[0-9a-f]{64}")


class KeysInvalid(ValueError):
    """The keys configuration cannot be used; the message names the entry and the field."""


@dataclass(frozen=True, slots=True)
class ClientKey:
    name: str
    rate: float | None = None  # requests per second
    burst: float = 1.0
    concurrency: int | None = None


# Who a request is when no keys are configured: limited only by the global cap.
ANONYMOUS = ClientKey("anonymous")


def digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


def default_name(key_digest: bytes) -> str:
    return f"key-{key_digest.hex()[:8]}"


class KeyRing:
    """The keys in force; replaced whole when the file changes."""

    def __init__(self, keys: dict[bytes, ClientKey]) -> None:
        self._keys = keys
        self.required = bool(keys)

    def __len__(self) -> int:
        return len(self._keys)

    def names(self) -> list[str]:
        return sorted(key.name for key in self._keys.values())

    def limited(self) -> list[str]:
        """The names of keys with a rate or concurrency limit."""
        return sorted(
            key.name
            for key in self._keys.values()
            if key.rate is not None or key.concurrency is not None
        )

    def check(self, authorization: bytes | None) -> ClientKey:
        """The client behind `Authorization: Bearer <key>`; Unauthorized if unknown."""
        if not self.required:
            return ANONYMOUS
        if not authorization:
            raise Unauthorized("missing API key: send it as 'Authorization: Bearer <key>'")
        scheme, _, token = authorization.partition(b" ")
        client = self._keys.get(digest(token.strip()))
        if client is None or scheme.lower() != b"bearer":
            raise Unauthorized("invalid API key")
        return client


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str | None = Field(None, min_length=1)
    key_sha256: str | None = None
    name: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[\w.@:-]+$")
    rate: float | None = Field(None, gt=0)
    burst: float | None = Field(None, ge=1)
    concurrency: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_key(self) -> "_Entry":
        if (self.key is None) == (self.key_sha256 is None):
            raise ValueError("give exactly one of key and key_sha256")
        if self.key_sha256 is not None and not _HEX64.fullmatch(self.key_sha256.lower()):
            raise ValueError("key_sha256 must be 64 hex digits (sha256 of the key)")
        return self


def _with_defaults(
    name: str, rate: float | None, burst: float | None, concurrency: int | None
) -> ClientKey:
    return ClientKey(
        name=name,
        rate=rate,
        burst=burst if burst is not None else max(1.0, rate or 1.0),
        concurrency=concurrency,
    )


def build_ring(
    env_keys: list[str],
    path: Path | None,
    *,
    rate: float | None = None,
    concurrency: int | None = None,
) -> KeyRing:
    """Keys from the settings and the file; `rate` and `concurrency` apply to every key
    that sets none of its own. KeysInvalid (one line, no key in it) if unusable."""
    keys: dict[bytes, ClientKey] = {}
    for raw in env_keys:
        key_digest = digest(raw.encode())
        keys[key_digest] = _with_defaults(default_name(key_digest), rate, None, concurrency)
    if path is not None:
        for key_digest, client in _from_file(path, rate, concurrency):
            if key_digest in keys:
                raise KeysInvalid(f"keys file {path}: key {client.name!r} is given twice")
            keys[key_digest] = client
    names = [client.name for client in keys.values()]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise KeysInvalid(f"key names must be unique; repeated: {', '.join(twice)}")
    return KeyRing(keys)


def _from_file(
    path: Path, rate: float | None, concurrency: int | None
) -> list[tuple[bytes, ClientKey]]:
    try:
        data: Any = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise KeysInvalid(f"keys file {path}: cannot read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        # The parser's message quotes the offending line, which may hold a key.
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise KeysInvalid(f"keys file {path}: not valid YAML{line}") from None
    if isinstance(data, dict) and set(data) == {"keys"}:
        data = data["keys"]
    if data is None:
        data = []
    if not isinstance(data, list):
        raise KeysInvalid(f"keys file {path}: expected a list of keys (or a mapping with 'keys')")
    found = []
    for i, raw in enumerate(data):
        try:
            entry = _Entry.model_validate(raw)
        except ValidationError as exc:
            # Never echo the input: it is a key.
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'entry'}: {e['msg']}" for e in exc.errors()
            )
            raise KeysInvalid(
                f"keys file {path}: entry {i}: {problems} "
                "(allowed: key or key_sha256, name, rate, burst, concurrency)"
            ) from None
        if entry.key is not None:
            key_digest = digest(entry.key.encode())
        else:
            assert entry.key_sha256 is not None
            key_digest = bytes.fromhex(entry.key_sha256)
        own = entry.rate is not None or entry.concurrency is not None
        client = _with_defaults(
            entry.name or default_name(key_digest),
            entry.rate if own else rate,
            entry.burst,
            entry.concurrency if own else concurrency,
        )
        found.append((key_digest, client))
    return found


def file_stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when the file is edited or replaced (None if it is gone)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


# How often the keys file is looked at for changes.
KEYS_FILE_POLL_S = 1.0


async def watch_key_file(
    path: Path,
    rebuild: Callable[[], KeyRing],
    apply: Callable[[KeyRing], None],
    log: Any,
    poll: float = KEYS_FILE_POLL_S,
) -> None:
    """Re-read the keys file whenever it changes (edited, or replaced by a rename), until
    cancelled. A file that is gone or invalid leaves the keys in force as they are."""
    stamp = file_stamp(path)
    while True:
        await asyncio.sleep(poll)
        now = file_stamp(path)
        if now == stamp:
            continue
        stamp = now
        if now is None:
            log.warning("api_keys_file_missing", path=str(path), kept="the keys in force")
            continue
        try:
            ring = rebuild()
        except KeysInvalid as exc:
            log.warning("api_keys_file_invalid", error=str(exc), kept="the keys in force")
            continue
        apply(ring)
        log.info("api_keys_reloaded", path=str(path), keys=len(ring))
