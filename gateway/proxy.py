"""POST /v1/chat/completions, /v1/completions, /v1/embeddings as a plain ASGI app.

FastAPI's request object, routing and response classes cost about as much as the relay
itself (~110 µs per request on a 2-core VM; docs/gateway.md, "What other proxies cost"),
so this path reads the ASGI messages directly. It checks the
request (key, content type, size, JSON, model) so that bad input never reaches a
replica, lets the strategy pick a healthy replica, and relays the answer. A replica
that cannot be reached or answers 429/502/503/504 before any byte went back is retried
once on another candidate. A client that goes away cancels the exchange, which closes
the upstream connection so the replica stops.
"""

import asyncio
import math
import os
import re
import time

import orjson

from gateway.auth import check_bearer
from gateway.disconnect import DisconnectWatch
from gateway.errors import (
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    NoReplicaAvailable,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from gateway.relay import (
    RETRY_STATUSES,
    RelayResult,
    UpstreamFailure,
    open_upstream,
    relay_response,
)
from gateway.state import Gateway, gateway_of
from gateway.upstream import Upstream
from routers import Outcome, RouteRequest, prompt
from turnout.asgi import Receive, Scope, Send

# Request headers never forwarded: per-hop, or recomputed for the upstream hop.
_NOT_FORWARDED = frozenset(
    {
        b"connection",
        b"keep-alive",
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
# Status logged and counted when the client went away before the answer was complete.
CLIENT_CLOSED = 499


class _ClientGone(Exception):
    """The client disconnected while the body was being read."""


class _Exchange:
    """What one request learns on its way, for the answer, the log line and the metrics."""

    __slots__ = (
        "error",
        "first_byte_at",
        "headers",
        "model",
        "model_label",
        "replica",
        "request_id",
        "response_started",
        "retried",
        "session",
        "started",
        "status",
    )

    def __init__(self, request_id: str) -> None:
        self.started = time.perf_counter()
        self.request_id = request_id
        self.model = ""
        self.model_label = "none"
        self.replica = "none"
        self.status = 0
        self.first_byte_at: float | None = None
        self.retried = False
        self.session: str | None = None
        self.response_started = False
        self.error = ""
        self.headers: list[tuple[str, str]] = []

    def response_headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"x-turnout-replica", self.replica.encode()),
            (b"x-request-id", self.request_id.encode()),
        ]


class ProxyEndpoint:
    """The ASGI app mounted at each relayed POST path."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gw = gateway_of(scope["state"])
        exchange, content_type, content_length, key = _scan_headers(gw, scope["headers"])
        path = scope["path"]
        if scope.get("query_string"):
            path += "?" + scope["query_string"].decode("latin-1")
        watch: DisconnectWatch | None = None
        task = asyncio.current_task()
        assert task is not None
        try:
            check_bearer(key, gw.api_keys, "API key")
            _check_content(gw, content_type, content_length)
            body = await _read_body(receive, gw.settings.max_body_bytes)
            route = _parse(gw, exchange, body)
            watch = DisconnectWatch(receive, task)
            await _dispatch(gw, exchange, route, path, body, send)
        except GatewayError as err:
            await _send_error(exchange, err, send)
        except _ClientGone:
            exchange.status = CLIENT_CLOSED
        except asyncio.CancelledError:
            if watch is None or not watch.gone:
                raise
            task.uncancel()
            exchange.status = CLIENT_CLOSED
            exchange.error = exchange.error or "client_disconnected"
        except Exception as exc:
            # A bug of ours: answer 500 in OpenAI's shape, keep the traceback in the log.
            gw.log.exception("request_crashed", request_id=exchange.request_id)
            await _send_error(
                exchange, GatewayError(f"internal error ({type(exc).__name__})"), send
            )
        finally:
            if watch is not None:
                watch.stop()
            _finish(gw, exchange)


def _scan_headers(
    gw: Gateway, raw: list[tuple[bytes, bytes]]
) -> tuple[_Exchange, bytes | None, bytes | None, bytes | None]:
    """One pass over the request headers: what to check, and what to forward."""
    content_type = content_length = key = request_id = session = None
    forwarded: list[tuple[str, str]] = []
    keep_authorization = not gw.api_keys
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
        elif name == b"x-session-id":
            session = value
        if name not in _NOT_FORWARDED:
            forwarded.append((name.decode("latin-1"), value.decode("latin-1")))
    rid = request_id_from(request_id)
    forwarded.append(("x-request-id", rid))
    exchange = _Exchange(rid)
    exchange.headers = forwarded
    exchange.session = None if session is None else session.decode("latin-1")
    return exchange, content_type, content_length, key


def request_id_from(value: bytes | None) -> str:
    """The client's x-request-id when it is sane (printable ASCII, at most 128), else new."""
    if value is None or not _REQUEST_ID.fullmatch(value):
        return os.urandom(16).hex()
    return value.decode("ascii")


def _check_content(gw: Gateway, content_type: bytes | None, content_length: bytes | None) -> None:
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
            raise _too_large(gw.settings.max_body_bytes)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, checked against the limit while it arrives."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise _ClientGone
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise _too_large(limit)
        return body
    parts = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        part: bytes = message.get("body", b"")
        size += len(part)
        if size > limit:
            raise _too_large(limit)
        parts.append(part)
        if not message.get("more_body", False):
            return b"".join(parts)


def _parse(gw: Gateway, exchange: _Exchange, body: bytes) -> RouteRequest:
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
    replicas_serving = [r for r in gw.pool if model in r.models]
    if not replicas_serving:
        served = gw.pool.served_models(healthy_only=False)
        raise ModelNotFound(
            f"model {model!r} is not served here; served models: {', '.join(served) or 'none'}",
            param="model",
        )
    exchange.model_label = model
    max_tokens = data.get("max_tokens", data.get("max_completion_tokens"))
    tokens, prefix = prompt.from_openai_body(data)
    user = data.get("user")
    return RouteRequest(
        model=model,
        stream=data.get("stream") is True,
        prompt_tokens_estimate=tokens,
        max_tokens=max_tokens if isinstance(max_tokens, int) else None,
        request_id=exchange.request_id,
        prefix_hashes=prefix,
        session=exchange.session or (user if isinstance(user, str) and user else None),
    )


def _no_replica(gw: Gateway, model: str) -> NoReplicaAvailable:
    retry_after = str(max(1, math.ceil(gw.settings.health_interval)))
    return NoReplicaAvailable(
        f"no healthy replica serves {model!r} right now; retry later",
        headers={"retry-after": retry_after},
    )


async def _dispatch(
    gw: Gateway, exchange: _Exchange, route: RouteRequest, path: str, body: bytes, send: Send
) -> None:
    """Pick a replica and relay; once more on another replica if the first one fails early."""
    tried: list[str] = []
    last_error: GatewayError | None = None
    for attempt in range(2):
        candidates = gw.pool.candidates(route.model, tried)
        view = gw.strategy.choose(route, candidates) if candidates else None
        if view is None:
            raise last_error or _no_replica(gw, route.model)
        replica = gw.pool.get(view.id)
        exchange.replica = replica.id
        if attempt:
            exchange.retried = True
            gw.telemetry.observe_retry(route.model)
        can_retry = attempt == 0 and len(candidates) > 1
        try:
            if await _attempt(gw, exchange, route, replica, path, body, send, can_retry):
                return
        except UpstreamFailure as failure:
            if not (can_retry and failure.retryable):
                raise failure.error from None
            last_error = failure.error
        tried.append(replica.id)


async def _attempt(
    gw: Gateway,
    exchange: _Exchange,
    route: RouteRequest,
    replica: Upstream,
    path: str,
    body: bytes,
    send: Send,
    can_retry: bool,
) -> bool:
    """One exchange with one replica. False: it answered 'not now' and we may retry."""
    settings = gw.settings
    pool = gw.pool
    tokens = route.prompt_tokens_estimate
    pool.acquire(replica.id, tokens)
    ok = False
    result = RelayResult(on_first_byte=lambda: pool.first_byte(replica.id, tokens))
    sent_at = time.perf_counter()
    try:
        # The model under the replica's own name (aliases) and its API key, if it has either.
        upstream_body, headers = replica.request_for(route.model, body, exchange.headers)
        try:
            resp = await open_upstream(
                gw.session, replica.url + path, upstream_body, headers, settings.first_byte_timeout
            )
        except UpstreamFailure as failure:
            _note_failure(gw, exchange, replica, failure.kind, fatal=failure.fatal)
            raise
        complete = False
        try:
            status = resp.status
            if status >= 500 or status == 429:
                # 429 (and a kind's own "busy", as Ollama's 503) is load, not ill health: it
                # counts as an error but ejects nothing.
                health = status >= 500 and status not in replica.busy_statuses
                _note_failure(gw, exchange, replica, f"http_{status}", fatal=False, health=health)
                if can_retry and status in RETRY_STATUSES:
                    return False
            else:
                pool.record_success(replica.id)
                exchange.error = ""
            try:
                await relay_response(
                    resp,
                    send,
                    exchange.response_headers(),
                    settings.idle_timeout,
                    result,
                    first_chunk_timeout=settings.first_byte_timeout,
                )
            except UpstreamFailure as failure:
                _note_failure(gw, exchange, replica, failure.kind, fatal=failure.fatal)
                raise
            finally:
                exchange.response_started = result.started
                exchange.first_byte_at = result.first_byte_at
                complete = result.complete
            exchange.status = status
            if result.broken is not None:
                _note_failure(gw, exchange, replica, result.broken[0], fatal=False)
            ok = status < 400 and result.broken is None
            return True
        finally:
            # An unfinished response's connection cannot be reused: closing it also tells
            # the replica to stop (that is how a client's disconnect reaches it).
            if complete:
                resp.release()
            else:
                resp.close()
    finally:
        pool.release(replica.id, tokens, answered=result.first_byte_at is not None)
        if gw.on_finished is not None:
            ttfb = None if result.first_byte_at is None else result.first_byte_at - sent_at
            gw.on_finished(route, Outcome(replica.id, ok, ttfb))


def _note_failure(
    gw: Gateway,
    exchange: _Exchange,
    replica: Upstream,
    kind: str,
    *,
    fatal: bool,
    health: bool = True,
) -> None:
    """Count a failure of `replica` and, for health-relevant ones, tell the pool."""
    exchange.error = kind
    gw.telemetry.observe_upstream_error(replica.id, kind)
    if health and gw.pool.record_error(replica.id, kind, fatal=fatal):
        gw.log.warning("replica_ejected", replica=replica.id, reason=kind, by="traffic")


async def _send_error(exchange: _Exchange, err: GatewayError, send: Send) -> None:
    exchange.status = err.status
    exchange.error = exchange.error or type(err).__name__
    if exchange.response_started:
        return
    body = err.body()
    headers = [
        *exchange.response_headers(),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    headers.extend((k.encode(), v.encode()) for k, v in err.headers.items())
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _finish(gw: Gateway, exchange: _Exchange) -> None:
    now = time.perf_counter()
    duration = now - exchange.started
    ttfb = None if exchange.first_byte_at is None else exchange.first_byte_at - exchange.started
    strategy = gw.strategy.name
    gw.telemetry.observe_request(
        exchange.model_label, exchange.replica, strategy, exchange.status, ttfb, duration
    )
    gw.log.info(
        "request_finished",
        request_id=exchange.request_id,
        model=exchange.model,
        replica=exchange.replica,
        strategy=strategy,
        status=exchange.status,
        ttfb=None if ttfb is None else round(ttfb, 6),
        duration=round(duration, 6),
        retried=exchange.retried,
        error=exchange.error or None,
    )
