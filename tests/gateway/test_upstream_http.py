"""The relay's HTTP/1.1 client (gateway/upstream_http.py) against scripted servers on
127.0.0.1: keep-alive and its age limit, streaming with backpressure, closing an unfinished
response, bodies that end at EOF, 1xx answers, and every way an exchange can fail."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import pytest
import uvloop

from gateway.upstream_conn import HIGH_WATER
from gateway.upstream_http import ConnectFailed, UpstreamClient, UpstreamHttpError
from tests.procs import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


Run = Callable[[Coroutine[Any, Any, None]], None]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Run:
    """Both loops: the gateway runs on uvloop, whose transports differ in the details."""
    runner: Run = uvloop.run if request.param == "uvloop" else asyncio.run
    return runner


class Server:
    """Counts connections and notes when each one closed."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.handler = handler or self.answer_ok
        self.connections = 0
        self.closed = 0
        self.requests: list[bytes] = []
        self.tasks: set[asyncio.Task[None]] = set()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            try:
                # Wait for the client's side to go (at most 5 s), then count it.
                async with asyncio.timeout(5):
                    while await reader.read(65536):
                        pass
                self.closed += 1
            except (TimeoutError, ConnectionError):
                pass
            finally:
                writer.close()

    async def answer_ok(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A keep-alive replica: every request answered 200 with {}."""
        while True:
            await self.read_request(reader)
            writer.write(OK)

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request


@contextlib.asynccontextmanager
async def serving(handler: Handler | None = None) -> AsyncIterator[tuple[Server, str]]:
    server = Server(handler)
    port = free_port()
    listener = await asyncio.start_server(server.serve, "127.0.0.1", port)
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        listener.close()
        for task in server.tasks:
            task.cancel()
        await asyncio.gather(*server.tasks, return_exceptions=True)


async def until(check: Callable[[], bool], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not within {seconds} s")


async def post(client: UpstreamClient, url: str, body: bytes = b"{}") -> bytes:
    response = await client.post(url, b"/v1/chat/completions", body, [(b"x-a", b"1")])
    assert response.status == 200
    return await response.read()


def test_a_connection_is_reused_and_the_request_goes_out_as_given(run: Run) -> None:
    async def scenario() -> None:
        async with serving() as (server, url):
            client = UpstreamClient(connect_timeout=2, keepalive_s=4)
            assert await post(client, url, b'{"model": "m"}') == b"{}"
            assert await post(client, url) == b"{}"
            assert server.connections == 1
            host = url.removeprefix("http://").encode()
            assert server.requests[0] == (
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: " + host + b"\r\n"
                b"content-length: 14\r\nx-a: 1\r\n\r\n" + b'{"model": "m"}'
            )
            await client.close()

    run(scenario())


def test_a_replica_whose_connections_all_went_is_forgotten(run: Run) -> None:
    async def scenario() -> None:
        async with serving() as (server, url):
            client = UpstreamClient(connect_timeout=2, keepalive_s=0.2)
            assert await post(client, url) == b"{}"
            assert url in client._pools
            await until(lambda: url not in client._pools, 5)
            assert client.open_connections() == 0
            # Asked again, it is made again.
            assert await post(client, url) == b"{}"
            assert server.connections == 2
            await client.close()

    run(scenario())


def test_the_host_header_never_carries_the_urls_credentials(run: Run) -> None:
    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(OK)

        async with serving(handler) as (server, url):
            client = UpstreamClient(connect_timeout=2, keepalive_s=4)
            host = url.removeprefix("http://")
            assert await post(client, f"http://user:secret@{host}") == b"{}"
            assert b"\r\nhost: " + host.encode() + b"\r\n" in server.requests[0]
            assert b"secret" not in server.requests[0]
            await client.close()

    run(scenario())


def test_an_idle_connection_past_its_keepalive_is_closed_and_not_reused(run: Run) -> None:
    async def scenario() -> None:
        async with serving() as (server, url):
            client = UpstreamClient(connect_timeout=2, keepalive_s=0.2)
            await post(client, url)
            await until(lambda: server.closed == 1)  # swept, so its descriptor comes back
            assert client.open_connections() == 0
            await post(client, url)
            assert server.connections == 2
            await client.close()

    run(scenario())


def test_a_stream_is_read_as_it_arrives_and_a_slow_reader_holds_the_replica(run: Run) -> None:
    async def scenario() -> None:
        piece = b"x" * 65536
        first_read, blocked = asyncio.Event(), asyncio.Event()
        total = 0

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal total
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n")
            writer.write(b"transfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            await first_read.wait()
            # Until the client stops reading: our send buffer fills and stays full.
            for _ in range(1024):
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                total += len(piece)
                if writer.transport.get_write_buffer_size() > 4 * len(piece):
                    blocked.set()
                    break
                await asyncio.sleep(0)
            await writer.drain()
            writer.write(b"0\r\n\r\n")

        async with serving(handler) as (server, url):
            client = UpstreamClient(connect_timeout=2, keepalive_s=4)
            response = await client.post(url, b"/v1/completions", b"{}", [])
            assert response.headers[b"content-type"] == b"text/event-stream"
            assert await response.readany() == b"first"
            first_read.set()
            await asyncio.wait_for(blocked.wait(), 10)
            buffered = sum(len(chunk) for chunk in response._chunks)
            assert buffered <= HIGH_WATER + 4 * len(piece)
            received = 0
            while chunk := await response.readany():
                received += len(chunk)
            assert received == total and response.complete
            await client.close()

    run(scenario())


def test_closing_an_unfinished_response_closes_its_connection(run: Run) -> None:
    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\none\r\n")
            await reader.read()  # until the client closes

        async with serving(handler) as (server, url):
            client = UpstreamClient(connect_timeout=2, keepalive_s=4)
            response = await client.post(url, b"/v1/completions", b"{}", [])
            assert await response.readany() == b"one"
            response.close()
            await until(lambda: server.closed == 1)
            assert client.open_connections() == 0
            await client.close()

    run(scenario())


def test_a_cancelled_request_closes_its_connection(run: Run) -> None:
    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            await reader.read()  # no answer, until the client closes

        async with serving(handler) as (server, url):
            client = UpstreamClient(connect_timeout=2, keepalive_s=4)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await client.post(url, b"/v1/completions", b"{}", [])
            await until(lambda: server.closed == 1)
            await client.close()

    run(scenario())


def test_a_body_without_length_ends_when_the_connection_does(run: Run) -> None:
    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it")
            await writer.drain()
            writer.close()

        async with serving(handler) as (server, url):
            client = UpstreamClient(connect_timeout=2, keepalive_s=4)
            assert await post(client, url) == b"all of it"
            await client.close()

    run(scenario())


def test_an_informational_answer_is_skipped(run: Run) -> None:
    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n" + OK)

        async with serving(handler) as (server, url):
            client = UpstreamClient(connect_timeout=2, keepalive_s=4)
            response = await client.post(url, b"/v1/completions", b"{}", [])
            assert (response.status, b"link" in response.headers) == (200, False)
            assert await response.read() == b"{}"
            await client.close()

    run(scenario())


@pytest.mark.parametrize(
    ("answer", "message", "answered"),
    [
        (b"", "before answering", False),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", "mid-response", True),
        (b"HTTP/1.1 2000 What\r\n\r\n", "malformed response", False),
    ],
    ids=["closed-at-once", "closed-mid-body", "malformed"],
)
def test_a_broken_exchange_raises(run: Run, answer: bytes, message: str, answered: bool) -> None:
    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(answer)
            await writer.drain()
            writer.close()

        async with serving(handler) as (server, url):
            client = UpstreamClient(connect_timeout=2, keepalive_s=4)
            with pytest.raises(UpstreamHttpError, match=message) as caught:
                response = await client.post(url, b"/v1/completions", b"{}", [])
                await response.read()
            assert caught.value.answered is answered
            await client.close()

    run(scenario())


def test_a_refused_connection_raises_connect_failed(run: Run) -> None:
    async def scenario() -> None:
        client = UpstreamClient(connect_timeout=2, keepalive_s=4)
        with pytest.raises(ConnectFailed):
            await client.post(f"http://127.0.0.1:{free_port()}", b"/v1/completions", b"{}", [])
        await client.close()

    run(scenario())


def test_a_burst_leaves_at_most_max_idle_connections_open(run: Run) -> None:
    async def scenario() -> None:
        release = asyncio.Event()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                await server.read_request(reader)
                await release.wait()
                writer.write(OK)

        async with serving(handler) as (server, url):
            client = UpstreamClient(connect_timeout=2, keepalive_s=4, max_idle=2)
            burst = [asyncio.ensure_future(post(client, url)) for _ in range(6)]
            await until(lambda: len(server.requests) == 6)
            assert client.open_connections() == 6  # no cap on the ones in use
            release.set()
            assert await asyncio.gather(*burst) == [b"{}"] * 6
            await until(lambda: server.closed == 4)
            assert client.open_connections() == 2
            for _ in range(4):
                await post(client, url)
            assert server.connections == 6  # the two kept were reused
            await client.close()

    run(scenario())


def test_an_answer_before_the_whole_request_went_out_closes_the_connection(run: Run) -> None:
    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readuntil(b"\r\n\r\n")
            server.requests.append(head)
            writer.write(b"HTTP/1.1 413 Too Large\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(1)  # not reading the body meanwhile

        async with serving(handler) as (server, url):
            client = UpstreamClient(connect_timeout=2, keepalive_s=4)
            response = await client.post(url, b"/v1/completions", b"x" * 32_000_000, [])
            assert (response.status, await response.read()) == (413, b"")
            assert client.open_connections() == 0  # not reusable: the body is half sent
            await client.close()

    run(scenario())
