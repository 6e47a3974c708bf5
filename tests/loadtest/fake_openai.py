"""A small OpenAI-compatible server with known timings, for the load generator's tests.

Streams `max_tokens` chunks of one token each: the first after --ttft seconds, the rest --gap
seconds apart, then a usage chunk and [DONE]; --blank-every N sends every Nth token chunk with
empty text (a partial UTF-8 character, as vLLM does). --fail-every N answers every Nth request with
--fail-status (500);
--break-every N cuts every Nth stream after two chunks; --garbage-every N streams a line that
is not JSON in every Nth; --error-event-every N sends an error event instead of the 2nd chunk.
Sets x-turnout-replica to --replica. With --api-key K, requests without `Bearer K` get a 401.

    python -m tests.loadtest.fake_openai --port 8000 --ttft 0.05 --gap 0.01
"""

import argparse
import asyncio
import itertools
import json

from aiohttp import web

from loadtest.sim.tokenizer import encode, encode_chat


def make_app(
    *,
    ttft: float,
    gap: float,
    fail_every: int,
    break_every: int,
    garbage_every: int,
    error_event_every: int,
    fail_status: int,
    replica: str | None,
    api_key: str | None = None,
    blank_every: int = 0,
) -> web.Application:
    counter = itertools.count(1)
    received = [0]

    async def complete(request: web.Request) -> web.StreamResponse:
        received[0] += 1
        if api_key and request.headers.get("Authorization") != f"Bearer {api_key}":
            error = {"message": "bad key", "type": "invalid_request_error", "param": None}
            return web.json_response({"error": {**error, "code": "invalid_api_key"}}, status=401)
        n = next(counter)
        body = await request.json()
        headers = {"x-turnout-replica": replica} if replica else {}
        if fail_every and n % fail_every == 0:
            error = {"message": "injected failure", "type": "server_error", "param": None}
            return web.json_response({"error": {**error, "code": fail_status}}, status=fail_status)
        chat = request.path.endswith("/chat/completions")
        prompt = body["messages"][0]["content"] if chat else body["prompt"]
        tokens = int(body.get("max_tokens") or 16)
        # Counted as vllm-sim counts (the approximate tokenizer, its chat template included).
        counted = encode_chat(body["messages"]) if chat else encode(prompt)
        usage = {"prompt_tokens": len(counted), "completion_tokens": tokens}
        if not body.get("stream"):
            await asyncio.sleep(ttft + gap * (tokens - 1))
            text = "tok " * tokens
            choice = {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
            return web.json_response({"choices": [choice], "usage": usage}, headers=headers)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **headers})
        await response.prepare(request)
        await asyncio.sleep(ttft)
        for i in range(tokens):
            if i:
                await asyncio.sleep(gap)
            if break_every and n % break_every == 0 and i == 2:
                assert request.transport is not None
                request.transport.close()
                return response
            if garbage_every and n % garbage_every == 0 and i == 1:
                await response.write(b"data: {not json\n\n")
            if error_event_every and n % error_event_every == 0 and i == 1:
                error = {"error": {"message": "engine failed", "type": "server_error", "code": 500}}
                await response.write(b"data: " + json.dumps(error).encode() + b"\n\n")
                await response.write(b"data: [DONE]\n\n")
                return response
            text = "" if blank_every and (i + 1) % blank_every == 0 else "tok "
            choice = {"index": 0, "delta": {"content": text}} if chat else {"text": text}
            await response.write(b"data: " + json.dumps({"choices": [choice]}).encode() + b"\n\n")
        await response.write(
            b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\n"
        )
        await response.write(b"data: [DONE]\n\n")
        return response

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def count(_: web.Request) -> web.Response:
        return web.json_response({"received": received[0]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", complete)
    app.router.add_post("/v1/completions", complete)
    app.router.add_get("/health", health)
    app.router.add_get("/fake/received", count)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ttft", type=float, default=0.0)
    parser.add_argument("--gap", type=float, default=0.0)
    parser.add_argument("--fail-every", type=int, default=0)
    parser.add_argument("--break-every", type=int, default=0)
    parser.add_argument("--garbage-every", type=int, default=0)
    parser.add_argument("--error-event-every", type=int, default=0)
    parser.add_argument("--fail-status", type=int, default=500)
    parser.add_argument("--replica", default=None)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--blank-every", type=int, default=0)
    args = parser.parse_args()
    app = make_app(
        ttft=args.ttft,
        gap=args.gap,
        fail_every=args.fail_every,
        break_every=args.break_every,
        garbage_every=args.garbage_every,
        error_event_every=args.error_event_every,
        fail_status=args.fail_status,
        replica=args.replica,
        api_key=args.api_key,
        blank_every=args.blank_every,
    )
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
