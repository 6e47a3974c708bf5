"""The HTTP face of one simulated replica: an inference server's API, as a plain ASGI app.

Plain ASGI rather than FastAPI because every streamed token goes through here: the
same replica behind FastAPI's StreamingResponse spends 1.05-1.5x the CPU per token
(bench/sim_stream_bench.py --compare-fastapi), and the raw ASGI `send` is what lets a
fault close the socket without a response. Routes: POST /v1/chat/completions,
/v1/completions; GET /v1/models, /metrics, GET, POST and DELETE /sim/faults; and the
liveness routes and pages of the server it presents itself as (loadtest/sim/faces.py:
vLLM by default, with /health, /ping and /version).
"""

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

import orjson
from prometheus_client import CollectorRegistry

from loadtest.sim.api import (
    APPROXIMATE,
    DONE,
    ApiError,
    Kind,
    ResponseShapes,
    parse_generation,
)
from loadtest.sim.engine import RequestRejected
from loadtest.sim.exposition import (
    SglangCollector,
    VllmCollector,
    llama_server_metrics,
    metrics_registry,
    render,
)
from loadtest.sim.faces import Facts, Page, face_named
from loadtest.sim.faces_local import OLLAMA_BUSY, ModelLock
from loadtest.sim.faults import Faults, FaultsInvalid
from loadtest.sim.gpus import SharedGpu
from loadtest.sim.hf_tokenizer import load_tokenizer
from loadtest.sim.kvcache import SharedKVPool
from loadtest.sim.messages import (
    drop_connection,
    read_body,
    respond,
    wait_disconnect,
    watch_disconnect,
)
from loadtest.sim.replica import RealTimeEngine, ReplicaConfig, Stream
from loadtest.sim.tokenizer import PromptEncoder, output_text, output_token_text
from turnout.asgi import Receive, Scope, Send
from turnout.logs import get_logger

VLLM_VERSION = "0.32.0"
LEGACY_VLLM_VERSION = "0.8.5"
JSON = [(b"content-type", b"application/json")]
SSE = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
TEXT = [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]
POLL_SECONDS = 0.05
LOG = get_logger("vllm_sim.server")
Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


class SimServer:
    """The ASGI app of one replica; `startup`/`shutdown` run its engine loop."""

    def __init__(
        self,
        config: ReplicaConfig,
        pool: SharedKVPool | None = None,
        gpu: SharedGpu | None = None,
        encoder: PromptEncoder | None = None,
    ) -> None:
        self.config = config
        self.model = config.model
        self.face = face_named(config.present_as)
        if encoder is None:
            encoder = load_tokenizer(config.tokenizer) if config.tokenizer else APPROXIMATE
        self.encoder = encoder
        self.replica: RealTimeEngine | None = None
        self._shared = (pool, gpu)
        self._rng = random.Random(config.seed)
        self._created = int(time.time())
        self._registry: CollectorRegistry | None = None
        default = self.face.metrics_default
        self.metrics_on = default is not None and (
            default if config.metrics is None else config.metrics
        )
        # llama-cpp-python's model lock: one request at a time.
        self._lock = ModelLock(serial=self.face.serial)
        self._pages = self.face.pages()
        self._routes = self._route_table()

    @property
    def running(self) -> RealTimeEngine:
        if self.replica is None:
            raise RuntimeError("the replica is not started (run the app's lifespan)")
        return self.replica

    def _route_table(self) -> dict[str, tuple[tuple[str, ...], Handler]]:
        routes: dict[str, tuple[tuple[str, ...], Handler]] = {
            "/v1/chat/completions": (("POST",), self.chat),
            "/v1/completions": (("POST",), self.completions),
            "/v1/models": (("GET",), self.models),
            "/sim/faults": (("GET", "POST", "DELETE"), self.faults),
        }
        for path, methods in self.face.health_paths.items():
            routes[path] = (methods, self.health)
        for path, (methods, _) in self.face.pages().items():
            routes[path] = (methods, self.page)
        if self.metrics_on:
            routes["/metrics"] = (("GET",), self.metrics)
        elif self.face.metrics_off() is not None:
            routes["/metrics"] = (("GET",), self.page)
        return routes

    async def startup(self) -> None:
        self.replica = RealTimeEngine(self.config, *self._shared)
        if self.face.name == "sglang":
            self._registry = metrics_registry(
                SglangCollector(self.model, self.replica.engine.stats)
            )
        else:
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

    async def _error(
        self, send: Send, error: ApiError, extra: Sequence[tuple[bytes, bytes]] = ()
    ) -> None:
        """An error in the presented server's own shape."""
        body = self.face.error_body(error.status, error.message, error.param)
        await respond(send, error.status, body, [*JSON, *extra])

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        route = self._routes.get(path)
        if route is None:
            page = self.face.not_found(path)
            await respond(send, page.status, page.body, page.headers)
            return
        methods, handler = route
        if method not in methods:
            error = ApiError(405, f"{method} is not allowed on {path}")
            await self._error(send, error, [(b"allow", ", ".join(methods).encode())])
            return
        try:
            await handler(scope, receive, send)
        except Exception:
            # A bug must still answer in the server's error shape (or end the stream).
            LOG.exception("request_failed", path=path)
            with contextlib.suppress(Exception):
                await self._error(send, ApiError(500, "internal error in the simulator"))

    # -- generation ------------------------------------------------------------------

    async def chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._generate("chat", receive, send)

    async def completions(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._generate("completion", receive, send)

    async def _generate(self, kind: Kind, receive: Receive, send: Send) -> None:
        async with self._lock.turn():
            await self._generate_now(kind, receive, send)

    async def _generate_now(self, kind: Kind, receive: Receive, send: Send) -> None:
        replica = self.running
        face = self.face
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
                await self._error(send, error, [(b"retry-after", b"1")])
                return
            request = parse_generation(
                kind,
                raw,
                served_model=None,
                max_model_len=replica.max_model_len,
                encoder=self.encoder,
            )
            model = face.model_for(request.model, self.model)
            if model is None:
                raise ApiError(404, face.unknown_model(request.model), "model")
            request = replace(
                request,
                model=model,
                ignore_eos=request.ignore_eos and face.honours_ignore_eos,
                include_usage=request.include_usage and face.stream_usage,
            )
            if face.name == "ollama" and len(replica.streams) >= (
                self.config.max_num_seqs + self.config.max_queue
            ):
                raise ApiError(503, OLLAMA_BUSY)
            shapes = ResponseShapes(
                request,
                face.response_id(kind == "chat"),
                fingerprint=face.fingerprint,
                role_every_chunk=face.role_every_chunk,
            )
            # Ollama's ids repeat; the engine's must not.
            engine_id = shapes.id if shapes.id not in replica.streams else uuid.uuid4().hex
            now = asyncio.get_running_loop().time()
            stream = replica.submit(request, engine_id, now)
        except ApiError as error:
            await self._error(send, error)
            return
        except RequestRejected as exc:
            await self._error(send, ApiError(400, str(exc)))
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
                failed = b"data: " + self.face.error_body(500, "the simulated engine failed")
                await send({"type": "http.response.body", "body": failed + b"\n\n" + DONE})
                return
            if produced > sent:
                text = "".join([output_token_text(stream.seed, i) for i in range(sent, produced)])
                body = shapes.text_chunk(text, reason)
                if chat and sent == 0 and not self.face.role_every_chunk:
                    body = shapes.role_chunk() + body
                sent = produced
            elif reason is not None:
                body = shapes.text_chunk("", reason)
            else:
                continue
            if reason is None:
                await send({"type": "http.response.body", "body": body, "more_body": True})
                if self.config.interrupt_requests and self._lock.wanted():
                    await send({"type": "http.response.body", "body": DONE, "more_body": False})
                    return
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
            await self._error(send, ApiError(500, "the simulated engine failed"))
            return
        text = output_text(stream.seed, stream.produced)
        body = shapes.full_body(text, stream.finish_reason or "abort", stream.produced)
        await respond(send, 200, body, JSON)

    # -- everything else -------------------------------------------------------------

    async def models(self, scope: Scope, receive: Receive, send: Send) -> None:
        # llama-cpp-python's listing takes the generation lock (and so interrupts a stream).
        async with self._lock.turn():
            await respond(send, 200, self.face.models(self._facts()), JSON)

    async def health(self, scope: Scope, receive: Receive, send: Send) -> None:
        delay = self.config.health_delay
        # SGLang's /health waits for a one-token generation to come back.
        if delay and await wait_disconnect(receive, delay):
            return
        await self._send_page(send, self.face.health(not self.running.faults.health_fail))

    async def page(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        off = self.face.metrics_off() if path == "/metrics" else None
        page = off or self._pages[path][1](self._facts())
        if scope["method"] == "HEAD":
            page = Page(page.status, page.headers, b"")
        await self._send_page(send, page)

    async def _send_page(self, send: Send, page: Page) -> None:
        await respond(send, page.status, page.body, page.headers)

    def _facts(self) -> Facts:
        config = self.config
        replica = self.running
        version = LEGACY_VLLM_VERSION if config.legacy_metrics else VLLM_VERSION
        return Facts(
            model=self.model,
            max_model_len=replica.max_model_len,
            created=self._created,
            slots=config.max_num_seqs,
            weight_bytes=int(replica.profile.weight_bytes),
            stats=replica.engine.stats(),
            sim={
                "version": version,
                "profile": config.profile,
                "time_scale": config.time_scale,
                "kv_mode": config.kv_mode,
                "kv_pool": config.kv_pool,
                "gpu": config.gpu,
                "prefix_caching": config.prefix_caching,
                "max_cached_tokens": config.max_cached_tokens,
                "metrics": self.metrics_on,
                "tokenizer": self.encoder.name,
            },
        )

    async def metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        replica = self.running
        delay = replica.faults.metrics_delay
        if delay and await wait_disconnect(receive, delay):
            return
        while replica.faults.metrics_hang:
            if await wait_disconnect(receive, POLL_SECONDS):
                return
        if self.face.name == "llamacpp":
            await respond(send, 200, llama_server_metrics(replica.engine.stats()), TEXT)
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
                await self._error(send, ApiError(400, f"the body is not valid JSON: {exc}"))
                return
            except FaultsInvalid as exc:
                await self._error(send, ApiError(400, str(exc), exc.param))
                return
            except ApiError as error:
                await self._error(send, error)
                return
            except ConnectionResetError:
                return
        await respond(send, 200, orjson.dumps(replica.faults.as_dict()), JSON)


def create_app(
    config: ReplicaConfig,
    pool: SharedKVPool | None = None,
    gpu: SharedGpu | None = None,
    encoder: PromptEncoder | None = None,
) -> SimServer:
    """One replica's ASGI app; its engine loop runs inside the app's lifespan. Replicas of one
    process given one `pool` share its KV memory, given one `gpu` its time. Prompts are counted
    with `encoder`, else with config.tokenizer (loaded here), else approximately."""
    return SimServer(config, pool, gpu, encoder)
