"""POST /v1/chat/completions, /v1/completions, /v1/embeddings as a plain ASGI app.

FastAPI's request object, routing and response classes cost about as much as the relay
itself (~110 µs per request on a 2-core VM; docs/gateway.md, "What other proxies cost"),
so this path reads the ASGI messages directly. It checks the request (key, limits,
content type, size, JSON, model: gateway/intake.py) so that bad input never reaches a
replica, then routes and relays it (gateway/dispatch.py), and writes one log line. A
client that goes away cancels the exchange, which closes the upstream connection so the
replica stops.
"""

import asyncio
import time

from gateway.disconnect import DisconnectWatch
from gateway.dispatch import Exchange, dispatch
from gateway.errors import GatewayError, RateLimited
from gateway.intake import ClientGone, check_content, parse, read_body, scan_headers
from gateway.limits import KeyState
from gateway.server import CUT_REASON
from gateway.state import Gateway, gateway_of
from turnout.asgi import Receive, Scope, Send

# Status logged and counted when the client went away before the answer was complete.
CLIENT_CLOSED = 499


class ProxyEndpoint:
    """The ASGI app mounted at each relayed POST path."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gw = gateway_of(scope["state"])
        exchange, content_type, content_length, authorization = scan_headers(gw, scope["headers"])
        path: bytes = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            path += b"?" + scope["query_string"]
        watch: DisconnectWatch | None = None
        admitted: KeyState | None = None
        task = asyncio.current_task()
        assert task is not None
        exchange.task = task
        exchange.pool = gw.pool
        try:
            client = gw.keys.check(authorization)
            exchange.key = client.name
            admitted = gw.limits.admit(client)
            check_content(gw, content_type, content_length)
            body = await read_body(receive, gw.settings.max_body_bytes)
            route = parse(gw, exchange, body)
            watch = DisconnectWatch(receive, task)
            await dispatch(gw, exchange, route, path, body, send)
        except RateLimited as err:
            gw.telemetry.observe_rate_limited(exchange.key, err.limit)
            await _send_error(exchange, err, send)
        except GatewayError as err:
            await _send_error(exchange, err, send)
        except ClientGone:
            _client_gone(exchange, scope)
        except asyncio.CancelledError:
            if watch is None or not watch.gone:
                raise
            task.uncancel()
            _client_gone(exchange, scope)
        except Exception as exc:
            # A bug of ours: answer 500 in OpenAI's shape, keep the traceback in the log.
            gw.log.exception("request_crashed", request_id=exchange.request_id)
            await _send_error(
                exchange, GatewayError(f"internal error ({type(exc).__name__})"), send
            )
        finally:
            if watch is not None:
                watch.stop()
            if admitted is not None:
                gw.limits.release(admitted)
            _finish(gw, exchange)


def _client_gone(exchange: Exchange, scope: Scope) -> None:
    """The client left, or the server cut it (the reason is then in the scope)."""
    cut = scope.get(CUT_REASON)
    if cut == "read_timeout":
        exchange.status = 408
    else:
        exchange.status = CLIENT_CLOSED
    # The reason it ended; earlier attempts' failures are in `failed_attempts`.
    exchange.error = cut or "client_disconnected"


async def _send_error(exchange: Exchange, err: GatewayError, send: Send) -> None:
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


def _finish(gw: Gateway, exchange: Exchange) -> None:
    now = time.perf_counter()
    duration = now - exchange.started
    ttfb = None if exchange.first_byte_at is None else exchange.first_byte_at - exchange.started
    strategy = gw.strategy.name
    gw.telemetry.observe_request(
        exchange.model_label, exchange.replica, strategy, exchange.status, ttfb, duration
    )
    if gw.keys.required:
        gw.telemetry.observe_key_request(exchange.key, exchange.status)
    gw.access_log.info(
        "request_finished",
        request_id=exchange.request_id,
        key=exchange.key,
        model=exchange.model,
        replica=exchange.replica,
        strategy=strategy,
        status=exchange.status,
        ttfb=None if ttfb is None else round(ttfb, 6),
        duration=round(duration, 6),
        retried=exchange.retried,
        failed_attempts=exchange.failed or None,
        error=exchange.error or None,
    )
