"""Minimal relays, to choose the gateway's client by numbers and to give its speed a floor.

`httpx` and `aiohttp`: the obvious FastAPI proxy (read the body, forward it, return or
stream the answer); only the client library differs, so the benchmark shows what each
costs. `asgi`: the bare plain-ASGI relay with aiohttp on uvicorn (httptools, uvloop), no
framework, no checks, no routing, no metrics, no log: the floor for the gateway's stack.

    python bench/relay.py --client httpx|aiohttp|asgi --upstream http://127.0.0.1:9001 --port 9002
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


def asgi_app(upstream: str) -> Callable[..., Any]:
    """The bare plain-ASGI relay: the body read, POSTed with aiohttp, the answer sent back
    whole or event by event."""
    state: dict[str, aiohttp.ClientSession] = {}

    async def lifespan(receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=4)
                state["session"] = aiohttp.ClientSession(upstream, connector=connector)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await state["session"].close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["method"] != "POST":  # the bench's readiness probe
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        resp = await state["session"].post(
            scope["path"], data=body, headers={"content-type": "application/json"}
        )
        content_type = resp.headers.get("content-type", "application/json")
        headers = [(b"content-type", content_type.encode())]
        if content_type.startswith("text/event-stream"):
            await send({"type": "http.response.start", "status": resp.status, "headers": headers})
            async for chunk in resp.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        else:
            payload = await resp.read()
            headers.append((b"content-length", str(len(payload)).encode()))
            await send({"type": "http.response.start", "status": resp.status, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
        resp.release()

    return app


VARIANTS: dict[str, Callable[[str], Any]] = {
    "httpx": httpx_app,
    "aiohttp": aiohttp_app,
    "asgi": asgi_app,
}


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
