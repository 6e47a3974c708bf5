"""The gateway's HTTP server connection: uvicorn's httptools protocol, with the guards a
front door needs and uvicorn lacks.

- Read timeout: a request's headers and body must arrive within GATEWAY_READ_TIMEOUT of
  its first byte (of the connection, for its first request), else 408 in OpenAI's shape
  and the connection closes. uvicorn itself waits forever for a request that never
  completes, and arms no timer at all on a new connection that sends nothing.
- Headers are capped at MAX_HEADER_BYTES (431), as nginx and Envoy cap them.
- Connection cap: beyond GATEWAY_MAX_CONNECTIONS open connections, a new connection's
  request is answered 503 in OpenAI's shape and the connection closed.
- Send stall: a client that leaves its answer unread (the socket's buffer past its high
  water mark, so uvicorn holds further writes) for GATEWAY_SEND_TIMEOUT is cut: the
  connection is aborted, the handler sees a disconnect and closes the upstream request,
  so the replica stops. Buffering is bounded by the transport's high water mark and
  aiohttp's read buffer meanwhile.
- Malformed HTTP is answered 400 in OpenAI's shape rather than uvicorn's plain text.

Nothing here runs per chunk, and per request only a flag or two: the read timer is armed
per connection, and for later requests only when one does not arrive whole in one read.
A request the server cut carries the reason in its scope (CUT_REASON) for the log line.
"""

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.errors import GatewayError, InvalidRequest, Overloaded, RequestTimeout
from turnout.asgi import Receive, Scope, Send
from turnout.logs import get_logger

# Scope key set on a request the server cut: "read_timeout" or "send_timeout".
CUT_REASON = "turnout.cut"
# Largest request head (request line and headers) accepted; nginx's default is 32 KiB.
MAX_HEADER_BYTES = 64 * 1024


class HeadersTooLarge(GatewayError):
    status = 431
    type = "invalid_request_error"
    code = "headers_too_large"


def raw_response(err: GatewayError) -> bytes:
    """A complete HTTP/1.1 response for `err` that closes the connection."""
    body = err.body()
    head = (
        f"HTTP/1.1 {err.status} {_REASONS.get(err.status, '')}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "x-turnout-replica: none\r\n"
        "connection: close\r\n"
    )
    for name, value in err.headers.items():
        head += f"{name}: {value}\r\n"
    return head.encode("latin-1") + b"\r\n" + body


_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


async def _over_capacity(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI app a connection beyond the cap gets for its request."""
    err = Overloaded(
        "the gateway holds as many connections as it may; retry shortly",
        headers={"retry-after": "1"},
    )
    body = err.body()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-turnout-replica", b"none"),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class GatewayProtocol(HttpToolsProtocol):
    """One client connection. Limits come from the running gateway's settings (the
    lifespan state); without a gateway (lifespan off) it is plain uvicorn."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        gw = self.app_state.get("gateway")
        settings = getattr(gw, "settings", None)
        self._telemetry = getattr(gw, "telemetry", None)
        self._read_timeout: float | None = getattr(settings, "read_timeout", None)
        self._send_timeout: float | None = getattr(settings, "send_timeout", None)
        self._max_connections: int | None = getattr(settings, "max_connections", None)
        self._read_timer: asyncio.TimerHandle | None = None
        self._send_timer: asyncio.TimerHandle | None = None
        self._reading = False  # a request has begun and is not complete yet
        self._head_done = False  # its headers are complete
        self._head_bytes = 0

    # -- the connection ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self._max_connections is not None and len(self.connections) > self._max_connections:
            self.app = _over_capacity
            self._count("over_capacity")
        if self._read_timeout is not None:
            self._read_timer = self.loop.call_later(self._read_timeout, self._read_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._read_timer, self._send_timer):
            if timer is not None:
                timer.cancel()
        self._read_timer = self._send_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._head_done:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEADER_BYTES:
                self._refuse(HeadersTooLarge(f"request headers over {MAX_HEADER_BYTES} bytes"))
                return
        super().data_received(data)
        # A request that did not arrive whole gets its deadline now (most arrive whole,
        # and so cost no timer).
        if (
            self._reading
            and self._read_timer is None
            and self._read_timeout is not None
            and not self.transport.is_closing()
        ):
            self._read_timer = self.loop.call_later(self._read_timeout, self._read_timed_out)

    def send_400_response(self, msg: str) -> None:
        self._refuse(InvalidRequest(f"malformed HTTP request: {msg}"))

    # -- httptools callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading = True
        self._head_done = False

    def on_headers_complete(self) -> None:
        self._head_done = True
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading = False
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    # -- flow control from the transport ------------------------------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_timeout is not None and self._send_timer is None:
            self._send_timer = self.loop.call_later(self._send_timeout, self._send_timed_out)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    # -- the guards --------------------------------------------------------------------

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        if not self._reading:
            # A connection that never sent a byte: nothing to answer.
            self.transport.close()
            return
        self._count("read_timeout")
        cycle = self.cycle
        if self._head_done and cycle is not None:
            # The handler waits for the rest of the body: it sees a disconnect, and the
            # reason in its scope; its own sends are dropped from now on.
            cycle.scope[CUT_REASON] = "read_timeout"  # type: ignore[literal-required]
            cycle.disconnected = True
            cycle.message_event.set()
            if cycle.response_started:
                self.transport.abort()
                return
        seconds = self._read_timeout
        self._refuse(RequestTimeout(f"the request did not arrive within {seconds:g} s"))

    def _send_timed_out(self) -> None:
        self._send_timer = None
        if self.transport.is_closing():
            return
        self._count("send_timeout")
        cycle = self.cycle
        path = None
        if cycle is not None:
            cycle.scope[CUT_REASON] = "send_timeout"  # type: ignore[literal-required]
            path = cycle.scope.get("path")
        get_logger("gateway.server").warning(
            "client_cut",
            reason="send_timeout",
            client=f"{self.client[0]}:{self.client[1]}" if self.client else None,
            path=path,
            seconds=self._send_timeout,
        )
        # Not close(): that would wait for the unread buffer to drain, which it won't.
        self.transport.abort()

    def _refuse(self, err: GatewayError) -> None:
        """Answer `err` on the raw connection and close it (no handler involved)."""
        if not self.transport.is_closing():
            self.transport.write(raw_response(err))
            self.transport.close()

    def _count(self, reason: str) -> None:
        if self._telemetry is not None:
            self._telemetry.observe_client_cut(reason)
