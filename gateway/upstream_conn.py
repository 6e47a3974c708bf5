"""One keep-alive connection to a replica (an asyncio protocol around httptools' response
parser) and the response it carries, read as it arrives (gateway/upstream_http.py has the
client that owns them)."""

import asyncio
import socket
from typing import Protocol

import httptools

# Buffered response bytes beyond which the socket is paused, and below which it resumes
# (aiohttp's StreamReader pauses at 128 KiB and resumes at 64 KiB too).
HIGH_WATER = 128 * 1024
LOW_WATER = 64 * 1024


class UpstreamHttpError(Exception):
    """The exchange failed. `answered`: some of the response had arrived."""

    def __init__(self, message: str, *, answered: bool = False) -> None:
        super().__init__(message)
        self.answered = answered


class ConnectFailed(UpstreamHttpError):
    """The replica could not be reached (refused, unreachable, unknown host)."""


class ConnectTimedOut(UpstreamHttpError):
    """No connection within the connect timeout."""


class Owner(Protocol):
    """What a connection needs of its pool."""

    loop: asyncio.AbstractEventLoop

    def release(self, connection: "Connection") -> None: ...

    def forget(self, connection: "Connection") -> None: ...


class Response:
    """A replica's answer: status and headers (names lower-cased) once they are in, the
    body through `read` or `readany`."""

    __slots__ = (
        "_chunks",
        "_connection",
        "_error",
        "_size",
        "_waiter",
        "_whole",
        "complete",
        "headers",
        "status",
    )

    def __init__(self, connection: "Connection") -> None:
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        # The body was read to its end; the connection went back to the pool.
        self.complete = False
        self._connection: Connection | None = connection
        self._chunks: list[bytes] = []
        self._size = 0
        self._error: UpstreamHttpError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._whole = False  # `read` is collecting the whole body: never pause

    async def readany(self) -> bytes:
        """The body bytes that arrived since the last call (waiting for some), b"" at the
        end. Raises UpstreamHttpError if the response broke off."""
        while not self._chunks:
            if self.complete:
                return b""
            if self._error is not None:
                raise self._error
            await self._wait()
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._size = 0
        connection = self._connection
        if connection is not None and connection.paused:
            connection.resume()
        return data

    async def read(self) -> bytes:
        """The whole body. Raises UpstreamHttpError if the response broke off."""
        self._whole = True
        connection = self._connection
        if connection is not None and connection.paused:
            connection.resume()
        while not self.complete:
            if self._error is not None:
                raise self._error
            await self._wait()
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._size = 0
        return data

    def close(self) -> None:
        """Done with the response: an unfinished one closes its connection, so the replica
        stops working on it. A finished one's connection is already back in the pool."""
        connection = self._connection
        if connection is not None:
            self._connection = None
            connection.abort()

    async def _wait(self) -> None:
        connection = self._connection
        assert connection is not None
        waiter = self._waiter = connection.loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- fed by the connection ---------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        if self._size > HIGH_WATER and not self._whole:
            connection = self._connection
            if connection is not None and not connection.paused:
                connection.pause()
        self._wake()

    def _end(self) -> None:
        self.complete = True
        self._connection = None
        self._wake()

    def _fail(self, error: UpstreamHttpError) -> None:
        self._error = error
        self._connection = None
        self._wake()


class Connection(asyncio.Protocol):
    """One keep-alive connection to a replica; carries one exchange at a time."""

    def __init__(self, pool: Owner) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: Response | None = None
        # Set when the response's headers are complete (or the exchange failed before).
        self.head: asyncio.Future[Response] | None = None
        self.closed = False
        self.paused = False
        self.idle_since = 0.0
        self.informational = False  # a 1xx answer is being skipped
        self.framed = False  # the answer says where its body ends (length or chunks)

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.response is None:
            # Bytes nobody asked for (on an idle connection): it cannot be trusted again.
            self.abort()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(f"the replica sent a malformed response ({exc})")
            self.abort()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        response = self.response
        if response is None:
            return
        if response.status and not self.framed and not self.informational:
            # A body without length or chunks ends when the connection does.
            self.response = None
            response._end()
            return
        reason = f" ({exc})" if exc else ""
        if response.status:
            self._fail(f"the replica closed the connection mid-response{reason}")
        else:
            self._fail(f"the replica closed the connection before answering{reason}")

    def pause_writing(self) -> None:
        pass  # a request is one write; the body is in the transport's buffer either way

    def resume_writing(self) -> None:
        pass

    # -- httptools callbacks -------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        response = self.response
        if response is not None:
            name = name.lower()
            if name == b"content-length" or name == b"transfer-encoding":
                self.framed = True
            response.headers[name] = value

    def on_headers_complete(self) -> None:
        response = self.response
        if response is None:
            return
        status = self.parser.get_status_code()
        if status < 200:
            # 1xx (e.g. 103 Early Hints): the real answer follows on the same message stream.
            self.informational = True
            response.headers.clear()
            self.framed = False
            return
        response.status = status
        head = self.head
        if head is not None and not head.done():
            head.set_result(response)

    def on_body(self, body: bytes) -> None:
        response = self.response
        if response is not None:
            response._feed(body)

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
            return
        response = self.response
        self.response = None
        self.head = None
        if response is None:
            return
        response._end()
        transport = self.transport
        if (
            self.parser.should_keep_alive()
            and not self.closed
            and transport is not None
            # An answer that came before the whole request went out (an early error):
            # the rest of the request would be read as the next one.
            and not transport.get_write_buffer_size()
        ):
            self.pool.release(self)
        else:
            self.abort()

    # -- the client side -----------------------------------------------------------------

    def send(self, message: bytes, body: bytes) -> asyncio.Future[Response]:
        """Write the request; the future gets the response once its headers are in."""
        assert self.transport is not None
        self.response = Response(self)
        self.framed = self.informational = False
        head = self.head = self.loop.create_future()
        if len(body) > 65536:
            self.transport.write(message)
            self.transport.write(body)
        else:
            self.transport.write(message + body)
        return head

    def pause(self) -> None:
        self.paused = True
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume(self) -> None:
        self.paused = False
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def abort(self) -> None:
        """Close now (unsent and unread bytes are dropped); the replica sees the close."""
        self.response = None
        head, self.head = self.head, None
        if head is not None and not head.done():
            head.cancel()
        if not self.closed:
            self.closed = True
            self.pool.forget(self)
            if self.transport is not None:
                self.transport.abort()

    def _fail(self, message: str) -> None:
        response = self.response
        self.response = None
        answered = response is not None and response.status != 0
        error = UpstreamHttpError(message, answered=answered)
        head, self.head = self.head, None
        if head is not None and not head.done():
            head.set_exception(error)
        if response is not None:
            response._fail(error)
