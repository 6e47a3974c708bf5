"""The HTTP face of one simulated replica: vLLM's OpenAI server, as a plain ASGI app.

Plain ASGI rather than FastAPI because every streamed token goes through here: the
same replica behind FastAPI's StreamingResponse spends 1.05-1.5x the CPU per token
(bench/sim_stream_bench.py --compare-fastapi), and the raw ASGI `send` is what lets a
fault close the socket without a response. Routes: POST /v1/chat/completions,
/v1/completions; GET /v1/models, /health, /ping, /version, /metrics; GET, POST
and DELETE /sim/faults.
"""

import asyncio
import contextlib
import random
import time
from collections.abc import Sequence

import orjson
from prometheus_client import CollectorRegistry

from loadtest.sim.api import (
    APPROXIMATE,
    DONE,
    ApiError,
    Kind,
    ResponseShapes,
    models_body,
    parse_generation,
)
from loadtest.sim.engine import RequestRejected
from loadtest.sim.exposition import VllmCollector, metrics_registry, render
from loadtest.sim.faults import Faults, FaultsInvalid
from loadtest.sim.hf_tokenizer import load_tokenizer
from loadtest.sim.kvcache import SharedKVPool
from loadtest.sim.replica import RealTimeEngine, ReplicaConfig, Stream
from loadtest.sim.tokenizer import PromptEncoder, output_text, output_token_text
from turnout.asgi import Receive, Scope, Send
from turnout.logs import get_logger

VLLM_VERSION = "0.32.0"
LEGACY_VLLM_VERSION = "0.8.5"
MAX_BODY_BYTES = 32 * 1024 * 1024
JSON = [(b"content-type", b"application/json")]
SSE = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
TEXT = [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]
POLL_SECONDS = 0.05
LOG = get_logger("vllm_sim.server")


async def respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def respond_error(
    send: Send, error: ApiError, extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    await respond(send, error.status, error.body(), [*JSON, *extra])


async def read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("client left while sending its request")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, f"request body over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def watch_disconnect(receive: Receive, stream: Stream) -> None:
    """Wake the stream's handler as soon as the client goes away."""
    while (await receive())["type"] != "http.disconnect":
        pass
    stream.disconnected = True
    stream.notify()


async def wait_disconnect(receive: Receive, seconds: float) -> bool:
    """True if the client left within `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            while (await receive())["type"] != "http.disconnect":
                pass
            return True
    except TimeoutError:
        return False


def drop_connection(send: Send) -> bool:
    """Close the client's socket without a response (uvicorn's send is bound to its cycle)."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        return False
    transport.abort()
    return True


class SimServer:
    """The ASGI app of one replica; `startup`/`shutdown` run its engine loop."""

    def __init__(
        self,
        config: ReplicaConfig,
        pool: SharedKVPool | None = None,
        encoder: PromptEncoder | None = None,
    ) -> None:
        self.config = config
        self.model = config.model
        if encoder is None:
            encoder = load_tokenizer(config.tokenizer) if config.tokenizer else APPROXIMATE
        self.encoder = encoder
        self.replica: RealTimeEngine | None = None
        self._pool = pool
        self._rng = random.Random(config.seed)
        self._created = int(time.time())
        self._registry: CollectorRegistry | None = None

    @property
    def running(self) -> RealTimeEngine:
        if self.replica is None:
            raise RuntimeError("the replica is not started (run the app's lifespan)")
        return self.replica

    async def startup(self) -> None:
        self.replica = RealTimeEngine(self.config, self._pool)
        collector = VllmCollector(
            self.model,
            self.replica.engine.stats,
            self.replica.histograms,
            legacy=self.config.legacy_metrics,
        )
        self._registry = metrics_registry(collector)
        self.replica.start()

    async def shutdown(self) -> None:
        if self.replica is not None:
            await self.replica.stop()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        handler = ROUTES.get(path)
        if handler is None:
            await respond_error(send, ApiError(404, f"no route for {path}"))
            return
        methods, name = handler
        if method not in methods:
            error = ApiError(405, f"{method} is not allowed on {path}")
            await respond_error(send, error, [(b"allow", ", ".join(methods).encode())])
            return
        try:
            await getattr(self, name)(scope, receive, send)
        except Exception:
            # A bug must still answer in OpenAI's shape (or end the stream), never hang.
            LOG.exception("request_failed", path=path)
            with contextlib.suppress(Exception):
                await respond_error(send, ApiError(500, "internal error in the simulator"))

    # -- generation ------------------------------------------------------------------

    async def chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._generate("chat", receive, send)

    async def completions(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._generate("completion", receive, send)

    async def _generate(self, kind: Kind, receive: Receive, send: Send) -> None:
        replica = self.running
        try:
            raw = await read_body(receive)
            verdict = replica.faults.draw(self._rng)
            if verdict == "drop" and drop_connection(send):
                await wait_disconnect(receive, 1.0)
                return
            if verdict == "error":
                status = replica.faults.error_status
                raise ApiError(status, f"simulated {status} error (fault injection)")
            if verdict == "rate_limit":
                error = ApiError(429, "simulated rate limit (fault injection)")
                await respond_error(send, error, [(b"retry-after", b"1")])
                return
            request = parse_generation(
                kind,
                raw,
                served_model=self.model,
                max_model_len=replica.max_model_len,
                encoder=self.encoder,
            )
            shapes = ResponseShapes(request)
            now = asyncio.get_running_loop().time()
            stream = replica.submit(request, shapes.id, now)
        except ApiError as error:
            await respond_error(send, error)
            return
        except RequestRejected as exc:
            await respond_error(send, ApiError(400, str(exc)))
            return
        except ConnectionResetError:
            return
        watcher = asyncio.ensure_future(watch_disconnect(receive, stream))
        try:
            if request.stream:
                await self._stream(stream, shapes, send, watcher)
            else:
                await self._complete(stream, shapes, send)
        finally:
            watcher.cancel()
            replica.abort(stream)

    async def _stream(
        self, stream: Stream, shapes: ResponseShapes, send: Send, watcher: "asyncio.Future[None]"
    ) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": SSE})
        sent = 0
        stalled = False
        chat = shapes.kind == "chat"
        request = stream.request
        while True:
            await stream.wait(sent)
            if stream.disconnected:
                return
            faults = self.running.faults
            if faults.drop_after is not None and sent >= faults.drop_after:
                drop_connection(send)
                await asyncio.wait({watcher}, timeout=1.0)
                return
            stall = faults.stall_after
            if not stalled and stall is not None and sent >= stall:
                stalled = True
                await self._stall(watcher)
                if stream.disconnected:
                    return
            produced, reason = stream.produced, stream.finish_reason
            if reason == "error":
                error = b"data: " + ApiError(500, "the simulated engine failed").body() + b"\n\n"
                await send({"type": "http.response.body", "body": error + DONE})
                return
            if produced > sent:
                text = "".join([output_token_text(stream.seed, i) for i in range(sent, produced)])
                body = shapes.text_chunk(text, reason)
                if chat and sent == 0:
                    body = shapes.role_chunk() + body
                sent = produced
            elif reason is not None:
                body = shapes.text_chunk("", reason)
            else:
                continue
            if reason is None:
                await send({"type": "http.response.body", "body": body, "more_body": True})
                continue
            if request.include_usage:
                body += shapes.usage_chunk(sent)
            await send({"type": "http.response.body", "body": body + DONE, "more_body": False})
            return

    async def _stall(self, watcher: "asyncio.Future[None]") -> None:
        """Go silent mid-stream: until the client leaves, or for `stall_seconds`."""
        seconds = self.running.faults.stall_seconds
        await asyncio.wait({watcher}, timeout=3600.0 if seconds is None else seconds)

    async def _complete(self, stream: Stream, shapes: ResponseShapes, send: Send) -> None:
        while stream.finish_reason is None and not stream.disconnected:
            await stream.wait(stream.produced)
        if stream.disconnected:
            return
        if stream.finish_reason == "error":
            await respond_error(send, ApiError(500, "the simulated engine failed"))
            return
        text = output_text(stream.seed, stream.produced)
        body = shapes.full_body(text, stream.finish_reason or "abort", stream.produced)
        await respond(send, 200, body, JSON)

    # -- everything else -------------------------------------------------------------

    async def models(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = models_body(self.model, self.running.max_model_len, self._created)
        await respond(send, 200, body, JSON)

    async def health(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.running.faults.health_fail:
            error = ApiError(503, "simulated unhealthy replica (fault injection)")
            await respond_error(send, error)
            return
        await respond(send, 200, b"", [])

    async def version(self, scope: Scope, receive: Receive, send: Send) -> None:
        version = LEGACY_VLLM_VERSION if self.config.legacy_metrics else VLLM_VERSION
        body = {
            "version": version,
            "simulator": "vllm-sim",
            "profile": self.config.profile,
            "time_scale": self.config.time_scale,
            "kv_mode": self.config.kv_mode,
            "kv_pool": self.config.kv_pool,
            "prefix_caching": self.config.prefix_caching,
            "tokenizer": self.encoder.name,
        }
        await respond(send, 200, orjson.dumps(body), JSON)

    async def metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        replica = self.running
        delay = replica.faults.metrics_delay
        if delay and await wait_disconnect(receive, delay):
            return
        while replica.faults.metrics_hang:
            if await wait_disconnect(receive, POLL_SECONDS):
                return
        assert self._registry is not None  # set by startup, with the replica
        await respond(send, 200, render(self._registry), TEXT)

    async def faults(self, scope: Scope, receive: Receive, send: Send) -> None:
        replica = self.running
        if scope["method"] == "DELETE":
            replica.faults = Faults()
        elif scope["method"] == "POST":
            try:
                raw = await read_body(receive)
                replica.faults = replica.faults.updated(orjson.loads(raw))
            except orjson.JSONDecodeError as exc:
                await respond_error(send, ApiError(400, f"the body is not valid JSON: {exc}"))
                return
            except FaultsInvalid as exc:
                await respond_error(send, ApiError(400, str(exc), exc.param))
                return
            except ApiError as error:
                await respond_error(send, error)
                return
            except ConnectionResetError:
                return
        await respond(send, 200, orjson.dumps(replica.faults.as_dict()), JSON)


ROUTES: dict[str, tuple[tuple[str, ...], str]] = {
    "/v1/chat/completions": (("POST",), "chat"),
    "/v1/completions": (("POST",), "completions"),
    "/v1/models": (("GET",), "models"),
    "/health": (("GET",), "health"),
    "/ping": (("GET", "POST"), "health"),
    "/version": (("GET",), "version"),
    "/metrics": (("GET",), "metrics"),
    "/sim/faults": (("GET", "POST", "DELETE"), "faults"),
}


def create_app(
    config: ReplicaConfig, pool: SharedKVPool | None = None, encoder: PromptEncoder | None = None
) -> SimServer:
    """One replica's ASGI app; its engine loop runs inside the app's lifespan. Prompts are
    counted with `encoder`, else with config.tokenizer (loaded here), else approximately."""
    return SimServer(config, pool, encoder)
