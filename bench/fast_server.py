"""A trivially fast OpenAI-compatible streaming server, for benchmarking the load generator.

Plain asyncio protocol on uvloop, HTTP/1.1 keep-alive, chunked SSE. Like an inference engine it
works in steps: every --step-ms it writes the next token chunk to every open stream (each
request gets `max_tokens` chunks, then a usage chunk and [DONE]). With --step-ms 0 a whole
answer is written at once. Costs a few microseconds per chunk, so the generator is what gets
measured.

    python bench/fast_server.py --port 9000 --step-ms 10
"""

from __future__ import annotations

import argparse
import asyncio
import re
import socket

import uvloop

_LENGTH = re.compile(rb"(?i)content-length:\s*(\d+)")
_MAX_TOKENS = re.compile(rb'"max_tokens":\s*(\d+)')
_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
    b"x-turnout-replica: bench\r\n\r\n"
)
_HEALTH = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"


def _chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


_TOKEN = _chunk(b'data: {"choices":[{"index":0,"delta":{"content":"tok "}}]}\n\n')
_TAIL = b"0\r\n\r\n"


def _end(tokens: int) -> bytes:
    usage = b'{"prompt_tokens":1,"completion_tokens":%d}' % tokens
    return (
        _chunk(b'data: {"choices":[],"usage":%s}\n\n' % usage) + _chunk(b"data: [DONE]\n\n") + _TAIL
    )


class _Engine:
    """Open streams, each advanced by one token per step."""

    def __init__(self, step_s: float) -> None:
        self.step_s = step_s
        self.streams: dict[asyncio.Transport, list[int]] = {}

    def start(self, transport: asyncio.Transport, tokens: int) -> None:
        if self.step_s <= 0:
            transport.write(_HEAD + _TOKEN * tokens + _end(tokens))
            return
        transport.write(_HEAD)
        self.streams[transport] = [0, tokens]

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.step_s)
            finished = []
            for transport, state in self.streams.items():
                if transport.is_closing():
                    finished.append(transport)
                    continue
                state[0] += 1
                if state[0] >= state[1]:
                    transport.write(_TOKEN + _end(state[1]))
                    finished.append(transport)
                else:
                    transport.write(_TOKEN)
            for transport in finished:
                del self.streams[transport]


class _Connection(asyncio.Protocol):
    def __init__(self, engine: _Engine) -> None:
        self.engine = engine
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            match = _LENGTH.search(head)
            length = int(match.group(1)) if match else 0
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            self.respond(head, body)

    def respond(self, head: bytes, body: bytes) -> None:
        assert self.transport is not None
        if head.startswith(b"GET"):
            self.transport.write(_HEALTH)
            return
        match = _MAX_TOKENS.search(body)
        self.engine.start(self.transport, int(match.group(1)) if match else 16)


async def serve(port: int, step_s: float) -> None:
    engine = _Engine(step_s)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Connection(engine), "127.0.0.1", port, backlog=4096, reuse_address=True
    )
    async with server:
        if step_s > 0:
            await asyncio.gather(server.serve_forever(), engine.run())
        else:
            await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--step-ms", type=float, default=10.0)
    args = parser.parse_args()
    uvloop.run(serve(args.port, args.step_ms / 1000))


if __name__ == "__main__":
    main()
