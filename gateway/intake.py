"""A relayed request's way in: its headers, content checks, body and model, before any
replica is chosen. Bad input never reaches a replica: each check raises a GatewayError."""

import os
import re
import time

import orjson

from gateway.dispatch import Exchange
from gateway.errors import (
    InvalidRequest,
    ModelNotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from gateway.state import Gateway
from routers import RouteRequest, prompt
from turnout.asgi import Receive

# Request headers never forwarded: per-hop (RFC 9110 section 7.6.1), or recomputed for
# the upstream hop. Headers a client names in its Connection header are per-hop too.
NOT_FORWARDED = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
        b"expect",
    }
)
_REQUEST_ID = re.compile(rb"[\x21-\x7e]{1,128}")


class ClientGone(Exception):
    """The client disconnected (or was cut) while the body was being read."""


def scan_headers(
    gw: Gateway, raw: list[tuple[bytes, bytes]]
) -> tuple[Exchange, bytes | None, bytes | None, bytes | None]:
    """One pass over the request headers: what to check, and what to forward.
    Returns the exchange, and the content type, content length and authorization."""
    content_type = content_length = key = request_id = connection = session = None
    forwarded: list[tuple[bytes, bytes]] = []
    keep_authorization = not gw.keys.required
    for name, value in raw:
        if name == b"content-type":
            content_type = value
        elif name == b"content-length":
            content_length = value
            continue
        elif name == b"authorization":
            key = value
            if not keep_authorization:
                # The gateway's own key is not the replicas' business.
                continue
        elif name == b"x-request-id":
            request_id = value
            continue
        elif name == b"connection":
            connection = value if connection is None else connection + b"," + value
        elif name == b"x-session-id":
            session = value
        if name not in NOT_FORWARDED:
            forwarded.append((name, value))
    if connection is not None:
        named = {token.strip().lower() for token in connection.split(b",")} - NOT_FORWARDED
        if named:
            forwarded = [(n, v) for n, v in forwarded if n not in named]
    rid = request_id_from(request_id)
    forwarded.append((b"x-request-id", rid.encode()))
    exchange = Exchange(rid)
    exchange.headers = forwarded
    exchange.session = None if session is None else session.decode("latin-1")
    return exchange, content_type, content_length, key


def request_id_from(value: bytes | None) -> str:
    """The client's x-request-id when it is sane (printable ASCII, at most 128), else new."""
    if value is None or not _REQUEST_ID.fullmatch(value):
        return os.urandom(16).hex()
    return value.decode("ascii")


def check_content(gw: Gateway, content_type: bytes | None, content_length: bytes | None) -> None:
    if content_type is None or content_type.split(b";")[0].strip().lower() != b"application/json":
        shown = "none" if content_type is None else content_type.decode("latin-1")
        raise UnsupportedMediaType(
            f"content type must be application/json, got {shown}", param="content-type"
        )
    if content_length is not None:
        try:
            length = int(content_length)
        except ValueError:
            raise InvalidRequest("content-length is not a number") from None
        if length > gw.settings.max_body_bytes:
            raise too_large(gw.settings.max_body_bytes)


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, checked against the limit while it arrives. A body that does not
    arrive in time is the server's business (gateway/server.py: GATEWAY_READ_TIMEOUT);
    it shows here as a disconnect."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise too_large(limit)
        return body
    parts = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        part: bytes = message.get("body", b"")
        size += len(part)
        if size > limit:
            raise too_large(limit)
        parts.append(part)
        if not message.get("more_body", False):
            return b"".join(parts)


def parse(gw: Gateway, exchange: Exchange, body: bytes) -> RouteRequest:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidRequest("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequest("request body must be a JSON object")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("missing 'model': name the model to use", param="model")
    exchange.model = model
    if not any(model in r.models for r in gw.pool):
        served = gw.pool.served_models(healthy_only=False)
        raise ModelNotFound(
            f"model {model!r} is not served here; served models: {', '.join(served) or 'none'}",
            param="model",
        )
    exchange.model_label = model
    max_tokens = data.get("max_tokens", data.get("max_completion_tokens"))
    tokens, prefix = prompt.from_openai_body(data, gw.prefix_hashes)
    user = data.get("user")
    return RouteRequest(
        model=model,
        stream=data.get("stream") is True,
        prompt_tokens_estimate=tokens,
        max_tokens=max_tokens if isinstance(max_tokens, int) else None,
        request_id=exchange.request_id,
        prefix_hashes=prefix,
        session=exchange.session or (user if isinstance(user, str) and user else None),
        now=time.monotonic(),
    )
