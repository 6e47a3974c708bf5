"""Minimal FastAPI relays, one per upstream client, to choose the gateway's client by numbers.

The obvious proxy: read the body, forward it, return or stream the answer. Only the
client library differs between variants, so the benchmark shows what each one costs.

    python bench/relay.py --client httpx|aiohttp --upstream http://127.0.0.1:9001 --port 9002
"""

import argparse
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import httpx
import orjson
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse


def httpx_app(upstream: str) -> FastAPI:
    state: dict[str, httpx.AsyncClient] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
        async with httpx.AsyncClient(base_url=upstream, limits=limits, timeout=30) as client:
            state["client"] = client
            yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/v1/chat/completions")
    async def relay(request: Request) -> Response:
        body = await request.body()
        client = state["client"]
        upstream_request = client.build_request(
            "POST", "/v1/chat/completions", content=body,
            headers={"content-type": "application/json"},
        )  # fmt: skip
        if orjson.loads(body).get("stream"):
            response = await client.send(upstream_request, stream=True)

            async def chunks() -> AsyncIterator[bytes]:
                try:
                    async for chunk in response.aiter_raw():
                        yield chunk
                finally:
                    await response.aclose()

            return StreamingResponse(chunks(), response.status_code, media_type="text/event-stream")
        response = await client.send(upstream_request)
        return Response(response.content, response.status_code, media_type="application/json")

    return app


def aiohttp_app(upstream: str) -> FastAPI:
    state: dict[str, aiohttp.ClientSession] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=1000, keepalive_timeout=4)
        async with aiohttp.ClientSession(upstream, connector=connector) as session:
            state["session"] = session
            yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/v1/chat/completions")
    async def relay(request: Request) -> Response:
        body = await request.body()
        session = state["session"]
        response = await session.post(
            "/v1/chat/completions", data=body, headers={"content-type": "application/json"}
        )
        if orjson.loads(body).get("stream"):

            async def chunks() -> AsyncIterator[bytes]:
                try:
                    async for chunk in response.content.iter_any():
                        yield chunk
                finally:
                    response.release()

            return StreamingResponse(chunks(), response.status, media_type="text/event-stream")
        content = await response.read()
        return Response(content, response.status, media_type="application/json")

    return app


VARIANTS: dict[str, Callable[[str], FastAPI]] = {"httpx": httpx_app, "aiohttp": aiohttp_app}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", choices=sorted(VARIANTS), required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app: Any = VARIANTS[args.client](args.upstream)
    uvicorn.run(
        app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False,
        loop="uvloop", http="httptools",
    )  # fmt: skip


if __name__ == "__main__":
    main()
