"""The same replica behind FastAPI's StreamingResponse, only to measure what the framework costs.

Used by `bench/sim_stream_bench.py --compare-fastapi`; serves POST /v1/chat/completions
(streaming only) and GET /health with the simulator's own engine loop, parsing and chunk
templates, so the difference in CPU per token is FastAPI's routing, request object and
StreamingResponse.

    python bench/sim_fastapi_variant.py PORT
"""

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtest.sim.api import DONE, ResponseShapes, parse_generation
from loadtest.sim.replica import ReplicaConfig
from loadtest.sim.server import SimServer
from loadtest.sim.tokenizer import output_token_text


def create_fastapi_app(config: ReplicaConfig) -> FastAPI:
    sim = SimServer(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await sim.startup()
        yield
        await sim.shutdown()

    app = FastAPI(lifespan=lifespan)

    @app.get("/health")
    async def health() -> Response:
        return Response()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> StreamingResponse:
        replica = sim.running
        parsed = parse_generation(
            "chat",
            await request.body(),
            served_model=config.model,
            max_model_len=replica.max_model_len,
        )
        shapes = ResponseShapes(parsed)
        stream = replica.submit(parsed, shapes.id, asyncio.get_running_loop().time())

        async def chunks() -> AsyncIterator[bytes]:
            sent = 0
            try:
                while True:
                    await stream.wait(sent)
                    produced, reason = stream.produced, stream.finish_reason
                    text = "".join(
                        [output_token_text(stream.seed, i) for i in range(sent, produced)]
                    )
                    body = shapes.text_chunk(text, reason)
                    if sent == 0:
                        body = shapes.role_chunk() + body
                    sent = produced
                    if reason is not None:
                        if parsed.include_usage:
                            body += shapes.usage_chunk(sent)
                        yield body + DONE
                        return
                    yield body
            finally:
                replica.abort(stream)

        return StreamingResponse(chunks(), media_type="text/event-stream")

    return app


def main() -> None:
    config = ReplicaConfig(
        model="bench",
        profile="tiny",
        max_num_seqs=int(sys.argv[2]) if len(sys.argv) > 2 else 256,
        max_num_batched_tokens=65536,
        kv_blocks=1_000_000,
        time_scale=float(sys.argv[3]) if len(sys.argv) > 3 else 0.0,
    )
    uvicorn.run(
        create_fastapi_app(config),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
