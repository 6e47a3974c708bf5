"""A tiny OpenAI-compatible upstream for gateway tests, run as its own process:

    python -m tests.gateway.fake_replica --port N --name NAME --models m1,m2

It answers /v1/chat/completions, /v1/completions and /v1/embeddings (streaming or not),
/v1/models, /health, /version and /metrics (as vLLM does, so the gateway takes it for
vLLM), and is steered by POST /fake/config (status to answer with, delays, number of
chunks, failing health, a connection dropped mid-stream). GET /fake/state reports how
many requests are open right now (`active`: a request whose client went away is
cancelled and leaves it), how many arrived, the last request's headers and raw body, and
the connections completions came on (`connections`: how many ever, `open`: still open).
"""

import argparse
import asyncio
import hashlib
import time
from typing import Any

import orjson
from aiohttp import web


def _config() -> dict[str, Any]:
    return {
        "status": 200,
        # Answer `status` only this many times, then 200 again (-1: always).
        "status_times": -1,
        "headers_delay": 0.0,
        "chunk_delay": 0.0,
        "chunks": 5,
        # Before sending chunk number `stall_after`, stall for an hour (-1: never).
        "stall_after": -1,
        # Before sending chunk number `drop_after`, drop the connection (-1: never).
        "drop_after": -1,
        "health_status": 200,
    }


class FakeReplica:
    def __init__(self, name: str, models: list[str]) -> None:
        self.name = name
        self.models = models
        self.config = _config()
        self.active = 0
        self.requests = 0
        self.cancelled = 0
        self.last_headers: dict[str, str] = {}
        self.last_body = b""
        # The transports completions came on, by the client's port.
        self.transports: dict[int, asyncio.BaseTransport] = {}

    def chunks(self, n: int) -> list[bytes]:
        """The exact SSE events of a stream, so a test can compare bytes."""
        events = []
        for i in range(n):
            payload = {
                "id": "cmpl-fake",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": self.models[0],
                "choices": [{"index": 0, "delta": {"content": f"w{i} "}, "finish_reason": None}],
            }
            events.append(b"data: " + orjson.dumps(payload) + b"\n\n")
        events.append(b"data: [DONE]\n\n")
        return events

    async def completions(self, request: web.Request) -> web.StreamResponse:
        transport = request.transport
        if transport is not None:
            self.transports[transport.get_extra_info("peername")[1]] = transport
        self.requests += 1
        self.active += 1
        try:
            return await self._answer(request)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.active -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        cfg = self.config
        body = await request.read()
        self.last_headers = {k.lower(): v for k, v in request.headers.items()}
        self.last_body = body
        await asyncio.sleep(cfg["headers_delay"])
        if cfg["status"] != 200 and cfg["status_times"] != 0:
            cfg["status_times"] -= 1
            error = {"error": {"message": "fake", "type": "x", "param": None, "code": None}}
            return web.json_response(error, status=cfg["status"])
        data = orjson.loads(body)
        headers = {"x-fake-replica": self.name}
        if data.get("stream"):
            response = web.StreamResponse(headers={**headers, "content-type": "text/event-stream"})
            await response.prepare(request)
            for i, chunk in enumerate(self.chunks(cfg["chunks"])):
                if i == cfg["stall_after"]:
                    await asyncio.sleep(3600)
                if i == cfg["drop_after"] and request.transport is not None:
                    request.transport.abort()  # aiohttp then cancels this handler
                    await asyncio.sleep(3600)
                await response.write(chunk)
                await asyncio.sleep(cfg["chunk_delay"])
            await response.write_eof()
            return response
        reply = {
            "id": "cmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": data.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"from {self.name}"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
            "body_sha256": hashlib.sha256(body).hexdigest(),
        }
        return web.json_response(reply, headers=headers)

    async def models_list(self, request: web.Request) -> web.Response:
        data = [
            {"id": m, "object": "model", "owned_by": "vllm", "max_model_len": 4096 * (i + 1)}
            for i, m in enumerate(self.models)
        ]
        return web.json_response({"object": "list", "data": data})

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "fake"})

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(status=self.config["health_status"])

    async def metrics(self, request: web.Request) -> web.Response:
        text = (
            "# TYPE vllm:num_requests_running gauge\n"
            f'vllm:num_requests_running{{model_name="{self.models[0]}"}} {self.active}\n'
            "# TYPE vllm:num_requests_waiting gauge\n"
            f'vllm:num_requests_waiting{{model_name="{self.models[0]}"}} 0\n'
        )
        return web.Response(text=text, content_type="text/plain")

    async def set_config(self, request: web.Request) -> web.Response:
        self.config.update(await request.json())
        return web.json_response(self.config)

    async def state(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "active": self.active,
                "requests": self.requests,
                "cancelled": self.cancelled,
                "last_headers": self.last_headers,
                "last_body": self.last_body.decode("utf-8", "replace"),
                "connections": len(self.transports),
                "open": sum(1 for t in self.transports.values() if not t.is_closing()),
            }
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="fake")
    parser.add_argument("--models", default="fake-model")
    args = parser.parse_args()
    fake = FakeReplica(args.name, args.models.split(","))
    app = web.Application()
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
        app.router.add_post(path, fake.completions)
    app.router.add_get("/v1/models", fake.models_list)
    app.router.add_get("/health", fake.health)
    app.router.add_get("/version", fake.version)
    app.router.add_get("/metrics", fake.metrics)
    app.router.add_post("/fake/config", fake.set_config)
    app.router.add_get("/fake/state", fake.state)
    web.run_app(app, host="127.0.0.1", port=args.port, handler_cancellation=True, print=None)


if __name__ == "__main__":
    main()
