"""A lean HTTP/1.1 client for the load generator: asyncio protocols, httptools' C parser,
keep-alive connections reused from an idle list, no connection limit.

Why not aiohttp: bench/loadtest_bench.py measured aiohttp's client at several hundred
microseconds of CPU per request and tens per streamed chunk on this machine class, which keeps
one process far below 2,000 req/s with a 5 ms lag budget. This client does one write per request
and stamps every chunk when its bytes arrive, before any parsing.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable
from typing import NamedTuple
from urllib.parse import urlsplit

import httptools

# Called with (body bytes, arrival time) for each piece of the response body.
OnBody = Callable[[bytes, float], None]


class HttpError(Exception):
    """The connection failed or broke; `connected` says whether any response byte arrived."""

    def __init__(self, message: str, *, connected: bool) -> None:
        super().__init__(message)
        self.connected = connected


class Response:
    """Status and headers of a response whose body went to `on_body`."""

    __slots__ = ("headers", "status")

    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[bytes, bytes] = {}


class Exchange(NamedTuple):
    """A request written on a connection, its response still to come."""

    connection: _Connection
    future: asyncio.Future[Response]
    reused: bool


class _Connection(asyncio.Protocol):
    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: Response | None = None
        self.sink: OnBody | None = None
        self.sink_error: Exception | None = None
        self.done: asyncio.Future[Response] | None = None
        self.now = 0.0
        self.got_bytes = False
        self.closed = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.now = time.perf_counter()
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            # The body sink's own error (a malformed stream) is the better explanation.
            error = self.sink_error or HttpError(f"malformed HTTP response: {exc}", connected=True)
            self.sink_error = None
            self._fail(error)
            self.abort()
        hook = self.pool.after_read
        if hook is not None:
            hook()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        reason = str(exc) if exc else "connection closed by the server"
        self._fail(HttpError(reason, connected=self.got_bytes))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if self.response is not None:
            self.response.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        if self.response is not None:
            self.response.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if self.sink is not None:
            try:
                self.sink(body, self.now)
            except Exception as exc:
                self.sink_error = exc
                raise

    def on_message_complete(self) -> None:
        done, response = self.done, self.response
        self.done = self.response = self.sink = None
        if done is not None and not done.done() and response is not None:
            done.set_result(response)
        if self.parser.should_keep_alive() and not self.closed:
            self.pool.release(self)
        else:
            self.abort()

    # client side
    def start(
        self, request: bytes, on_body: OnBody, response: Response
    ) -> asyncio.Future[Response]:
        assert self.transport is not None
        response.status = 0
        response.headers.clear()
        self.response = response
        self.sink = on_body
        self.got_bytes = False
        self.done = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.done

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, exc: Exception) -> None:
        done = self.done
        self.done = self.response = self.sink = None
        if done is not None and not done.done():
            done.set_exception(exc)


class ConnectionPool:
    """Keep-alive connections to one origin; opens a new one whenever none is idle."""

    def __init__(self, url: str, *, connect_timeout_s: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"target must be an http(s) URL, got {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self.host_header = parts.netloc.encode()
        self.connect_timeout_s = connect_timeout_s
        self.idle: list[_Connection] = []
        # Called after every read: lets a sender that is due go out between two reads instead
        # of after the whole burst of reads the event loop is working through.
        self.after_read: Callable[[], None] | None = None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, protocol = await loop.create_connection(
                    lambda: _Connection(self), self.host, self.port, ssl=self.ssl
                )
        except TimeoutError:
            raise HttpError(
                f"connect timed out after {self.connect_timeout_s:g}s", connected=False
            ) from None
        except OSError as exc:
            message = f"cannot connect to {self.host}:{self.port}: {exc}"
            raise HttpError(message, connected=False) from None
        return protocol

    def release(self, connection: _Connection) -> None:
        self.idle.append(connection)

    def message(self, method: bytes, path: bytes, headers: bytes, body: bytes) -> bytes:
        """The bytes of one request; `headers` are complete lines, CRLF included."""
        head = b"%s %s HTTP/1.1\r\nhost: %s\r\ncontent-length: %d\r\n%s\r\n" % (
            method,
            path,
            self.host_header,
            len(body),
            headers,
        )
        return head + body

    def begin(self, message: bytes, on_body: OnBody, response: Response) -> Exchange | None:
        """Write `message` now on an idle connection; None when none is idle (then `finish`
        connects). Lets a caller send at the exact scheduled moment, without a task switch.
        `response` gets the status and headers as soon as they arrive."""
        while self.idle:
            connection = self.idle.pop()
            if not connection.closed:
                future = connection.start(message, on_body, response)
                return Exchange(connection, future, reused=True)
        return None

    async def finish(
        self, message: bytes, on_body: OnBody, response: Response, begun: Exchange | None
    ) -> Response:
        """The response to `message` (begun or not). Raises HttpError, or what `on_body`
        raised; `response` then still holds the status and headers that arrived.

        Cancelling (e.g. a timeout) closes the connection, so the server stops the work.
        """
        while True:
            if begun is None:
                begun = self.begin(message, on_body, response)
            if begun is None:
                connection = await self._connect()
                future = connection.start(message, on_body, response)
                begun = Exchange(connection, future, reused=False)
            try:
                return await begun.future
            except HttpError as exc:
                # The server may close an idle keep-alive connection just as we reuse it:
                # nothing was answered, so try another connection.
                if exc.connected or not begun.reused:
                    raise
            except BaseException:
                begun.connection.abort()
                raise
            begun = None

    async def request(
        self, method: bytes, path: bytes, headers: bytes, body: bytes, on_body: OnBody
    ) -> Response:
        """Send one request; body pieces go to `on_body` as they arrive. Raises HttpError."""
        message = self.message(method, path, headers, body)
        response = Response()
        return await self.finish(message, on_body, response, self.begin(message, on_body, response))

    def close(self) -> None:
        for connection in self.idle:
            connection.abort()
        self.idle.clear()
