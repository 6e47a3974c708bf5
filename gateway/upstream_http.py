"""The relay's HTTP/1.1 client to the replicas: keep-alive connections per replica, one
write per request, httptools' C parser for the answer, its body handed over as it arrives.

Why not aiohttp's ClientSession: per request it builds a request object, computes auto
headers, wraps the body in a payload and goes through its connector: 38% of the gateway's
CPU samples at c=64 (py-spy; bench/gateway_bench.py --profile). With this client the
gateway's CPU per request fell from 302 to 172 µs, below a bare plain-ASGI relay with
aiohttp (docs/gateway.md, "Speed"). What the gateway needs of a client is small, and kept
here:

- Connections are reused while younger than `keepalive_s` since their last answer (below
  the replica's own keep-alive, so a request is never written on a connection the server
  is closing), and closed when older. No cap on the connections in use (the strategy
  decides how much each replica gets, not a pool); at most MAX_IDLE idle ones are kept per
  replica, so a burst leaves no more than that open behind it.
- TCP_NODELAY on every connection: a stream's chunks must not wait for ACKs.
- A response is read as it arrives; a reader that falls behind (a slow client) pauses the
  socket beyond HIGH_WATER buffered bytes (gateway/upstream_conn.py), so memory stays
  bounded.
- A response that is not read to its end closes its connection (`close`): that is how a
  client's disconnect, a cancellation or a timeout reaches the replica, which then stops.
- Bodies are relayed as sent: no decompression, no headers of our own but Host and
  Content-Length.
"""

import asyncio
import ssl
from collections.abc import Callable
from urllib.parse import quote, urlsplit

from gateway.upstream_conn import (
    ConnectFailed,
    Connection,
    ConnectTimedOut,
    Response,
    UpstreamHttpError,
)

__all__ = ["ConnectFailed", "ConnectTimedOut", "Response", "UpstreamClient", "UpstreamHttpError"]

# Idle connections kept per replica: more than a replica serves at once (vLLM's default
# max_num_seqs is 256), fewer than would strain descriptors after a burst of thousands.
MAX_IDLE = 512


def _host_header(hostname: str, port: int | None) -> str:
    """Host as RFC 9110 has it: the URL's host and port, never its user:password."""
    host = f"[{hostname}]" if ":" in hostname else hostname
    return host if port is None else f"{host}:{port}"


class _Pool:
    """The connections to one replica: idle ones by the time their last answer ended."""

    def __init__(
        self,
        base_url: str,
        loop: asyncio.AbstractEventLoop,
        connect_timeout: float,
        keepalive_s: float,
        max_idle: int = MAX_IDLE,
        on_empty: Callable[["_Pool"], None] | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.loop = loop
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self.connect_timeout = connect_timeout
        self.keepalive_s = keepalive_s
        self.max_idle = max_idle
        self.prefix = quote(parts.path.rstrip("/"), safe="/%:@!$&'()*+,;=-._~").encode("ascii")
        self.host_header = _host_header(parts.hostname, parts.port).encode("idna")
        self.idle: list[Connection] = []
        self.busy: set[Connection] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self.base_url = base_url
        self.connecting = 0
        # Told when the last idle connection was swept and none is busy.
        self._on_empty = on_empty

    def message(self, path: bytes, headers: list[tuple[bytes, bytes]], length: int) -> bytes:
        lines = b"".join([b"%s: %s\r\n" % header for header in headers])
        return b"POST %s%s HTTP/1.1\r\nhost: %s\r\ncontent-length: %d\r\n%s\r\n" % (
            self.prefix,
            path,
            self.host_header,
            length,
            lines,
        )

    def reuse(self) -> Connection | None:
        """An idle connection young enough to reuse, if there is one (no coroutine: this
        is every request's path)."""
        idle = self.idle
        if idle:
            now = self.loop.time()
            while idle:
                connection = idle.pop()
                if connection.closed:
                    continue
                if now - connection.idle_since < self.keepalive_s:
                    self.busy.add(connection)
                    return connection
                # The youngest is too old: so are all the others.
                connection.abort()
                self.close_idle()
        return None

    async def connect(self) -> Connection:
        """A new connection."""
        self.connecting += 1
        try:
            connection = await self._connect()
        finally:
            self.connecting -= 1
        self.busy.add(connection)
        return connection

    async def _connect(self) -> Connection:
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await self.loop.create_connection(
                    lambda: Connection(self), self.host, self.port, ssl=self.ssl
                )
        except TimeoutError:
            raise ConnectTimedOut(
                f"no connection to {self.host}:{self.port} within {self.connect_timeout:g} s"
            ) from None
        except OSError as exc:
            raise ConnectFailed(exc.strerror or str(exc)) from None
        return connection

    def release(self, connection: Connection) -> None:
        self.busy.discard(connection)
        if len(self.idle) >= self.max_idle:
            connection.abort()
            return
        connection.idle_since = self.loop.time()
        self.idle.append(connection)
        if self._sweep is None:
            self._sweep = self.loop.call_later(self.keepalive_s, self._swept)

    def forget(self, connection: Connection) -> None:
        self.busy.discard(connection)

    def _swept(self) -> None:
        """Close the idle connections that got too old to reuse (so descriptors come back)."""
        self._sweep = None
        deadline = self.loop.time() - self.keepalive_s
        keep = []
        for connection in self.idle:
            if connection.closed:
                continue
            if connection.idle_since <= deadline:
                connection.abort()
            else:
                keep.append(connection)
        self.idle = keep
        if keep:
            due = keep[0].idle_since + self.keepalive_s - self.loop.time()
            self._sweep = self.loop.call_later(max(0.05, due), self._swept)
        elif not self.busy and not self.connecting and self._on_empty is not None:
            self._on_empty(self)

    def close_idle(self) -> None:
        for connection in self.idle:
            connection.abort()
        self.idle = []

    def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        self.close_idle()
        for connection in list(self.busy):
            connection.abort()


class UpstreamClient:
    """Connections to every replica, by base URL. Create it inside the running loop."""

    def __init__(
        self, *, connect_timeout: float, keepalive_s: float, max_idle: int = MAX_IDLE
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._connect_timeout = connect_timeout
        self._keepalive_s = keepalive_s
        self._max_idle = max_idle
        self._pools: dict[str, _Pool] = {}

    def _pool(self, base_url: str) -> _Pool:
        pool = self._pools.get(base_url)
        if pool is None:
            pool = _Pool(
                base_url,
                self._loop,
                self._connect_timeout,
                self._keepalive_s,
                self._max_idle,
                on_empty=self._drop,
            )
            self._pools[base_url] = pool
        return pool

    def _drop(self, pool: _Pool) -> None:
        """A replica's connections have all gone: forget it (replicas come and go with
        discovery; one is made again at its next request)."""
        if self._pools.get(pool.base_url) is pool:
            del self._pools[pool.base_url]

    async def post(
        self, base_url: str, path: bytes, body: bytes, headers: list[tuple[bytes, bytes]]
    ) -> Response:
        """POST `body` to `base_url` + `path` and wait for the response's headers. Raises
        ConnectFailed, ConnectTimedOut or UpstreamHttpError; cancelled, it closes the
        connection. `headers` are sent as given, after Host and Content-Length."""
        pool = self._pools.get(base_url) or self._pool(base_url)
        connection = pool.reuse() or await pool.connect()
        head = connection.send(pool.message(path, headers, len(body)), body)
        try:
            return await head
        except BaseException:
            connection.abort()
            raise

    async def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()

    def open_connections(self) -> int:
        """Connections open now, idle or busy (for tests and /admin)."""
        pools = self._pools.values()
        return sum(len(p.busy) + sum(1 for c in p.idle if not c.closed) for p in pools)
