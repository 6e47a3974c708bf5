"""One exchange with one replica, and the relay of its answer back to the client.

Bytes go through untouched: the request body as the client sent it, the response body
as the replica sent it, SSE chunks forwarded one by one as they arrive.
"""

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from gateway.errors import GatewayError, UpstreamError, UpstreamTimeout, sse_error_event
from turnout.asgi import Send

# Statuses that mean "this replica cannot take it now": try another one.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# Upstream response headers worth passing back (the rest is per-hop or ours).
PASSED_BACK = ("content-type", "content-encoding", "retry-after")
SSE = "text/event-stream"


class UpstreamFailure(Exception):
    """The exchange failed before any byte went back to the client."""

    def __init__(self, kind: str, error: GatewayError, *, retryable: bool, fatal: bool) -> None:
        super().__init__(kind)
        self.kind = kind
        self.error = error
        # Another replica may succeed; `fatal` ejects this one at once.
        self.retryable = retryable
        self.fatal = fatal


async def open_upstream(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: list[tuple[str, str]],
    first_byte_timeout: float,
) -> aiohttp.ClientResponse:
    """POST and wait for the response headers; UpstreamFailure on any failure."""
    try:
        async with asyncio.timeout(first_byte_timeout):
            return await session.post(url, data=body, headers=headers)
    except aiohttp.ConnectionTimeoutError as exc:
        raise UpstreamFailure(
            "connect_timeout",
            UpstreamError(f"could not connect to the replica in time ({exc})"),
            retryable=True,
            fatal=True,
        ) from exc
    except aiohttp.ClientConnectorError as exc:
        raise UpstreamFailure(
            "connect",
            UpstreamError(f"could not connect to the replica: {exc.strerror or exc}"),
            retryable=True,
            fatal=True,
        ) from exc
    except TimeoutError as exc:
        raise UpstreamFailure(
            "first_byte_timeout",
            UpstreamTimeout(f"the replica sent no response within {first_byte_timeout:g} s"),
            retryable=False,
            fatal=False,
        ) from exc
    except aiohttp.ClientError as exc:
        # Closed before answering (often a pooled connection the server just dropped).
        raise UpstreamFailure(
            "disconnected",
            UpstreamError(f"the replica closed the connection before answering ({exc})"),
            retryable=True,
            fatal=False,
        ) from exc


@dataclass
class RelayResult:
    # The response's start (status, headers) went to the client: no other answer now.
    started: bool = False
    # Perf-counter time the first body byte went to the client (None if none did).
    first_byte_at: float | None = None
    # The replica's payload was read to its end (the connection can be reused).
    complete: bool = False
    # Set when the exchange broke after the response started: (kind, message).
    broken: tuple[str, str] | None = None
    # Called once, when the first body byte went to the client.
    on_first_byte: Callable[[], None] | None = None


async def relay_response(
    resp: aiohttp.ClientResponse,
    send: Send,
    extra_headers: list[tuple[bytes, bytes]],
    idle_timeout: float,
    result: RelayResult,
    first_chunk_timeout: float | None = None,
) -> None:
    """Send the replica's response to the client: SSE chunk by chunk, anything else whole.
    `result` is filled in as it goes, so the caller knows what happened even if this
    raises (or is cancelled) halfway. A stream's first chunk may take up to
    `first_chunk_timeout` (the wait for the first token, queueing included), every
    later one `idle_timeout`."""
    headers = list(extra_headers)
    for name in PASSED_BACK:
        value = resp.headers.get(name)
        if value is not None:
            headers.append((name.encode(), value.encode("latin-1")))
    if resp.headers.get("content-type", "").startswith(SSE):
        first = idle_timeout if first_chunk_timeout is None else first_chunk_timeout
        await _relay_stream(resp, send, headers, (first, idle_timeout), result)
        return
    try:
        async with asyncio.timeout(idle_timeout):
            payload = await resp.read()
    except TimeoutError as exc:
        raise UpstreamFailure(
            "idle_timeout",
            UpstreamTimeout(f"the replica stopped sending for {idle_timeout:g} s"),
            retryable=False,
            fatal=False,
        ) from exc
    except aiohttp.ClientError as exc:
        raise UpstreamFailure(
            "broken_body",
            UpstreamError(f"the replica broke off its response ({exc})"),
            retryable=False,
            fatal=False,
        ) from exc
    headers.append((b"content-length", str(len(payload)).encode()))
    result.started = True
    await send({"type": "http.response.start", "status": resp.status, "headers": headers})
    result.first_byte_at = time.perf_counter()
    if result.on_first_byte is not None:
        result.on_first_byte()
    await send({"type": "http.response.body", "body": payload, "more_body": False})
    result.complete = True


async def _relay_stream(
    resp: aiohttp.ClientResponse,
    send: Send,
    headers: list[tuple[bytes, bytes]],
    timeouts: tuple[float, float],
    result: RelayResult,
) -> None:
    result.started = True
    await send({"type": "http.response.start", "status": resp.status, "headers": headers})
    content = resp.content
    loop = asyncio.get_running_loop()
    timeout = timeouts[0]
    try:
        # One timer for the whole stream, pushed forward before each read.
        async with asyncio.timeout(None) as idle:
            while True:
                idle.reschedule(loop.time() + timeout)
                chunk = await content.readany()
                timeout = timeouts[1]
                if not chunk:
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if result.first_byte_at is None:
                    result.first_byte_at = time.perf_counter()
                    if result.on_first_byte is not None:
                        result.on_first_byte()
        result.complete = True
    except TimeoutError:
        kind = "idle_timeout" if result.first_byte_at else "first_byte_timeout"
        result.broken = (kind, f"the replica sent nothing for {timeout:g} s")
    except aiohttp.ClientError as exc:
        result.broken = ("broken_stream", f"the replica broke off the stream ({exc})")
    if result.broken is not None:
        # Bytes already went out: never retry; tell the client in the stream itself.
        error = UpstreamError(result.broken[1])
        await send(
            {"type": "http.response.body", "body": sse_error_event(error), "more_body": True}
        )
    await send({"type": "http.response.body", "body": b"", "more_body": False})
