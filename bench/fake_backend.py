"""A fake OpenAI-compatible replica that costs next to nothing, for gateway benchmarks.

Raw asyncio (uvloop when present), HTTP/1.1 keep-alive, canned bodies. Answers
POST /v1/chat/completions and /v1/completions (streaming when the body says
`"stream": true`: CHUNKS events written one by one, then `data: [DONE]`), and
GET /health, /version, /v1/models and /metrics so a gateway can start in front of it (and
take it for vLLM).

    python bench/fake_backend.py --port 9001 [--chunks 16] [--chunk-delay 0]
"""

import argparse
import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Coroutine
from typing import Any, cast

MODEL = "bench-model"


def _response(status: str, body: bytes, content_type: bytes = b"application/json") -> bytes:
    return (
        b"HTTP/1.1 " + status.encode() + b"\r\ncontent-type: " + content_type
        + b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )  # fmt: skip


def _chat_body() -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "ok"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
        }
    ).encode()


def _chunk(content: str) -> bytes:
    event = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": MODEL,
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
    }
    data = b"data: " + json.dumps(event).encode() + b"\n\n"
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class Backend(asyncio.Protocol):
    def __init__(self, chunks: int, chunk_delay: float = 0.0) -> None:
        self._chunks = chunks
        self._delay = chunk_delay
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._plain = _response("200 OK", _chat_body())
        self._health = _response("200 OK", b"")
        self._models = _response(
            "200 OK",
            json.dumps(
                {
                    "object": "list",
                    "data": [{"id": MODEL, "owned_by": "vllm", "max_model_len": 4096}],
                }
            ).encode(),
        )
        # vLLM's /version: with it and owned_by, the gateway takes this for vLLM and scrapes it.
        self._version = _response("200 OK", b'{"version": "bench"}')
        self._metrics = _response(
            "200 OK",
            b"# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting 0\n"
            b"# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 0\n",
            b"text/plain; version=0.0.4",
        )
        self._stream_head = (
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        self._stream_chunks = [_chunk(f"w{i} ") for i in range(chunks)]
        done = b"data: [DONE]\n\n"
        self._stream_tail = f"{len(done):x}\r\n".encode() + done + b"\r\n0\r\n\r\n"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self._buffer[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            total = end + 4 + length
            if len(self._buffer) < total:
                return
            body = self._buffer[end + 4 : total]
            self._buffer = self._buffer[total:]
            self._answer(head.split(" ", 2), body)

    def _answer(self, request_line: list[str], body: bytes) -> None:
        assert self._transport is not None
        method, path = request_line[0], request_line[1]
        if method == "POST" and path in ("/v1/chat/completions", "/v1/completions"):
            if b'"stream":true' in body.replace(b" ", b""):
                asyncio.get_running_loop().create_task(self._stream())
            else:
                self._transport.write(self._plain)
        elif path == "/health":
            self._transport.write(self._health)
        elif path == "/v1/models":
            self._transport.write(self._models)
        elif path == "/metrics":
            self._transport.write(self._metrics)
        elif path == "/version":
            self._transport.write(self._version)
        else:
            self._transport.write(_response("404 Not Found", b'{"error": "not found"}'))

    async def _stream(self) -> None:
        # One write per event, yielding between them, as a real server sends tokens.
        transport = self._transport
        assert transport is not None
        transport.write(self._stream_head)
        for chunk in self._stream_chunks:
            await asyncio.sleep(self._delay)
            if transport.is_closing():
                return
            transport.write(chunk)
        transport.write(self._stream_tail)


async def serve(host: str, port: int, chunks: int, chunk_delay: float = 0.0) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Backend(chunks, chunk_delay), host, port, backlog=1024
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=16)
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between events")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        run(serve(args.host, args.port, args.chunks, args.chunk_delay))


def run(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


if __name__ == "__main__":
    main()
