"""One exchange with one replica, and the relay of its answer back to the client.

Bytes go through untouched: the request body as the client sent it, the response body
as the replica sent it, SSE chunks forwarded one by one as they arrive.

An exchange has two phases. Until its first byte is in hand (the response headers,
and for a stream its first chunk) nothing has gone to the client, so the request may
still go to another replica: `open_upstream` and `first_chunk` raise UpstreamFailure.
After it, `relay_response` sends; a break then can only end the stream with an SSE
error event.
"""

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.errors import GatewayError, UpstreamError, UpstreamTimeout, sse_error_event
from gateway.upstream_http import (
    ConnectFailed,
    ConnectTimedOut,
    Response,
    UpstreamClient,
    UpstreamHttpError,
)
from turnout.asgi import Send

# Statuses that mean "this replica cannot take it now": try another one.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# Upstream response headers worth passing back (the rest is per-hop or ours).
PASSED_BACK = (b"content-type", b"content-encoding", b"retry-after")
SSE = b"text/event-stream"
Header = tuple[bytes, bytes]


class UpstreamFailure(Exception):
    """The exchange failed before any byte went back to the client."""

    def __init__(self, kind: str, error: GatewayError, *, retryable: bool, fatal: bool) -> None:
        super().__init__(kind)
        self.kind = kind
        self.error = error
        # Another replica may succeed; `fatal` ejects this one at once.
        self.retryable = retryable
        self.fatal = fatal


def is_stream(resp: Response) -> bool:
    return resp.status < 400 and resp.headers.get(b"content-type", b"").startswith(SSE)


async def open_upstream(
    client: UpstreamClient,
    base_url: str,
    path: bytes,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
) -> Response:
    """POST and wait for the response headers; UpstreamFailure on any failure. The caller
    bounds the wait (its first-byte deadline)."""
    try:
        return await client.post(base_url, path, body, headers)
    except ConnectTimedOut as exc:
        raise UpstreamFailure(
            "connect_timeout",
            UpstreamError(f"could not connect to the replica in time ({exc})"),
            retryable=True,
            fatal=True,
        ) from exc
    except ConnectFailed as exc:
        raise UpstreamFailure(
            "connect",
            UpstreamError(f"could not connect to the replica: {exc}"),
            retryable=True,
            fatal=True,
        ) from exc
    except UpstreamHttpError as exc:
        raise _disconnected(exc) from exc


async def first_chunk(resp: Response) -> bytes:
    """A stream's first chunk (b"" if it ended at once); UpstreamFailure if it broke."""
    try:
        return await resp.readany()
    except UpstreamHttpError as exc:
        raise _disconnected(exc) from exc


def _disconnected(exc: Exception) -> UpstreamFailure:
    # Closed before any answer (often a pooled connection the server just dropped).
    return UpstreamFailure(
        "disconnected",
        UpstreamError(f"the replica closed the connection before answering ({exc})"),
        retryable=True,
        fatal=False,
    )


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
    # Called for each chunk of a stream read from the replica (the first included).
    on_chunk: Callable[[], None] | None = None


def _headers(resp: Response, extra: list[tuple[bytes, bytes]]) -> list[Header]:
    headers = list(extra)
    for name in PASSED_BACK:
        value = resp.headers.get(name)
        if value is not None:
            headers.append((name, value))
    return headers


async def relay_response(
    resp: Response,
    send: Send,
    extra_headers: list[Header],
    idle_timeout: float,
    result: RelayResult,
    first: bytes | None = None,
) -> None:
    """Send the replica's response to the client: a stream chunk by chunk, starting with
    `first` (its first chunk, already read), anything else whole. `result` is filled in as
    it goes, so the caller knows what happened even if this raises (or is cancelled)
    halfway. Every read may take up to `idle_timeout`."""
    headers = _headers(resp, extra_headers)
    if first is not None:
        await _relay_stream(resp, send, headers, first, idle_timeout, result)
        return
    try:
        if resp.complete:  # it came whole with its headers, as most do: no timer to arm
            payload = await resp.read()
        else:
            async with asyncio.timeout(idle_timeout):
                payload = await resp.read()
    except TimeoutError as exc:
        raise UpstreamFailure(
            "idle_timeout",
            UpstreamTimeout(f"the replica stopped sending for {idle_timeout:g} s"),
            retryable=False,
            fatal=False,
        ) from exc
    except UpstreamHttpError as exc:
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
    resp: Response,
    send: Send,
    headers: list[Header],
    chunk: bytes,
    idle_timeout: float,
    result: RelayResult,
) -> None:
    result.started = True
    await send({"type": "http.response.start", "status": resp.status, "headers": headers})
    loop = asyncio.get_running_loop()
    on_chunk = result.on_chunk
    try:
        # One timer for the whole stream, pushed forward before each read.
        async with asyncio.timeout(None) as idle:
            while chunk:
                if on_chunk is not None:
                    on_chunk()
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if result.first_byte_at is None:
                    result.first_byte_at = time.perf_counter()
                    if result.on_first_byte is not None:
                        result.on_first_byte()
                idle.reschedule(loop.time() + idle_timeout)
                chunk = await resp.readany()
        result.complete = True
    except TimeoutError:
        result.broken = ("idle_timeout", f"the replica sent nothing for {idle_timeout:g} s")
    except UpstreamHttpError as exc:
        result.broken = ("broken_stream", f"the replica broke off the stream ({exc})")
    if result.broken is not None:
        # Bytes already went out: never retry; tell the client in the stream itself.
        error = UpstreamError(result.broken[1])
        await send(
            {"type": "http.response.body", "body": sse_error_event(error), "more_body": True}
        )
    await send({"type": "http.response.body", "body": b"", "more_body": False})
