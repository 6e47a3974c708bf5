"""One simulated replica at run time: the engine model driven in real time.

The engine loop steps the engine, sleeps the step's duration (times the time
scale and the slow-replica fault), then hands the step's tokens to the requests'
streams. Times given to the engine are `loop.time()` seconds, so queue time,
TTFT and every other latency vLLM reports come out in wall-clock seconds: a
replica run at time scale F behaves like a GPU F times slower.
"""

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from loadtest.sim.api import GenerationRequest
from loadtest.sim.engine import EngineConfig
from loadtest.sim.engine_kind import make_engine
from loadtest.sim.exposition import LatencyHistograms
from loadtest.sim.faults import Faults
from loadtest.sim.gpus import SharedGpu, shared_pool
from loadtest.sim.kvcache import KVCACHED_MAX_CACHED_TOKENS, SharedKVPool
from loadtest.sim.profiles import DEFAULT_GPU_MEMORY_UTILIZATION, Profile, load_profile
from loadtest.sim.types import SimRequest, StepResult
from turnout.logs import get_logger

# How far behind schedule the loop may run before it stops trying to catch up:
# sleeps are rounded to 1 ms by the event loop, so small debts are paid back.
CATCH_UP_SECONDS = 0.002
LOG = get_logger("vllm_sim.replica")


@dataclass(frozen=True, slots=True)
class ReplicaConfig:
    """Everything `vllm-sim serve` is told about one replica."""

    model: str
    profile: str = "tiny"
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    kv_blocks: int | None = None
    prefix_caching: bool = True
    kv_mode: Literal["static", "elastic"] = "static"
    kv_pool: str | None = None
    # The simulated GPU it shares with other replicas of its process (vllm-sim fleet).
    gpu: str | None = None
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION
    max_cached_tokens: int = KVCACHED_MAX_CACHED_TOKENS
    time_scale: float = 1.0
    seed: int = 0
    legacy_metrics: bool = False
    faults: Faults = field(default_factory=Faults)
    # Which server's API it presents (loadtest.sim.faces.FACES) and its options:
    # /metrics on or off (None: that server's default), seconds SGLang's /health takes,
    # Ollama's OLLAMA_MAX_QUEUE, llama-cpp-python's interrupt_requests.
    present_as: str = "vllm"
    metrics: bool | None = None
    health_delay: float = 0.0
    max_queue: int = 512
    interrupt_requests: bool = True
    # A model's tokenizer (directory or cached name) to count prompts with; None: approximate.
    tokenizer: str | None = None

    def engine_config(self) -> EngineConfig:
        return EngineConfig(
            max_num_seqs=self.max_num_seqs,
            max_num_batched_tokens=max(self.max_num_batched_tokens, self.max_num_seqs),
            num_blocks=self.kv_blocks,
            prefix_caching=self.prefix_caching,
            kv_mode=self.kv_mode,
            gpu_memory_utilization=self.gpu_memory_utilization,
            max_cached_tokens=self.max_cached_tokens,
        )


def elastic_pool(configs: Sequence[ReplicaConfig]) -> SharedKVPool:
    """The KVCached pool of the replicas `configs` (on one GPU): the KV memory their static
    caches would have had, summed (loadtest.sim.gpus), with no fixed partition per replica."""
    residents = []
    for config in configs:
        engine = config.engine_config()
        profile = load_profile(config.profile)
        residents.append(
            (profile, engine.block_size, engine.num_blocks, engine.gpu_memory_utilization)
        )
    return shared_pool(configs[0].kv_pool or configs[0].model, residents)


class Stream:
    """One request's output as it comes out of the engine, and whoever waits for it."""

    __slots__ = (
        "arrival",
        "disconnected",
        "finish_reason",
        "id",
        "last",
        "produced",
        "request",
        "seed",
        "waiter",
    )

    def __init__(self, request_id: str, request: GenerationRequest, seed: int, now: float) -> None:
        self.id = request_id
        self.request = request
        self.seed = seed
        self.arrival = now
        self.last = now
        self.produced = 0
        self.finish_reason: str | None = None
        self.disconnected = False
        self.waiter: asyncio.Future[None] | None = None

    def notify(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, seen: int) -> None:
        """Until more than `seen` tokens are out, the request finished, or the client left."""
        if self.produced > seen or self.finish_reason is not None or self.disconnected:
            return
        waiter = self.waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self.waiter = None


class RealTimeEngine:
    """The engine, its loop task, the open streams, and the latency histograms."""

    def __init__(
        self, config: ReplicaConfig, pool: SharedKVPool | None = None, gpu: SharedGpu | None = None
    ) -> None:
        self.config = config
        self.profile: Profile = load_profile(config.profile)
        if config.kv_mode == "elastic" and pool is None and self.profile.engine == "vllm":
            pool = elastic_pool([config])
        self.engine = make_engine(self.profile, config.engine_config(), pool, gpu)
        self.faults = config.faults
        self.histograms = LatencyHistograms()
        self.streams: dict[str, Stream] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._counter = 0

    @property
    def max_model_len(self) -> int:
        return self.profile.max_model_len

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="engine-loop")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # failures were logged
                await self._task
        for stream in list(self.streams.values()):
            self.engine.abort(stream.id)
            stream.finish_reason = "abort"
            stream.notify()
        self.streams.clear()

    # -- requests --------------------------------------------------------------------

    def submit(self, request: GenerationRequest, request_id: str, now: float) -> Stream:
        """Queue a request in the engine; RequestRejected if it can never run here."""
        if self._task is None or self._task.done():
            raise RuntimeError("the engine loop is not running")
        self._counter += 1
        seed = request.seed
        if seed is None:
            seed = self.config.seed * 1_000_003 + self._counter
        stream = Stream(request_id, request, seed, now)
        self.engine.add(
            SimRequest(
                id=request_id,
                prompt_token_ids=request.prompt_token_ids,
                max_tokens=request.max_tokens,
                ignore_eos=request.ignore_eos,
                seed=seed,
                arrival=now,
            ),
            now,
        )
        self.streams[request_id] = stream
        self._wake.set()
        return stream

    def abort(self, stream: Stream) -> None:
        """The client left: free the request's seat and blocks at once."""
        if self.streams.pop(stream.id, None) is not None:
            self.engine.abort(stream.id, asyncio.get_running_loop().time())
            stream.finish_reason = stream.finish_reason or "abort"

    # -- the engine loop -------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._steps()
        except Exception:
            # Fail every open request rather than leave its client waiting forever.
            LOG.exception("engine_loop_failed", model=self.config.model)
            for stream in self.streams.values():
                stream.finish_reason = "error"
                stream.notify()
            self.streams.clear()
            raise

    async def _steps(self) -> None:
        loop = asyncio.get_running_loop()
        clock: Callable[[], float] = loop.time
        deadline = clock()
        while True:
            if not self.engine.has_work():
                self._wake.clear()
                await self._wake.wait()
                deadline = clock()
                continue
            now = clock()
            deadline = max(deadline, now - CATCH_UP_SECONDS)
            result = self.engine.step(now)
            scale = self.config.time_scale * self.faults.step_multiplier
            deadline += result.duration * scale
            await asyncio.sleep(max(0.0, deadline - clock()))
            self._deliver(result, clock())

    def _deliver(self, result: StepResult, now: float) -> None:
        streams = self.streams
        hist = self.histograms
        for request_id in result.emitted:
            stream = streams.get(request_id)
            if stream is None:
                continue
            if stream.produced:
                hist.itl.observe(now - stream.last)
            else:
                hist.ttft.observe(now - stream.arrival)
            stream.produced += 1
            stream.last = now
            stream.notify()
        for done in result.finished:
            stream = streams.pop(done.id, None)
            if done.reason != "abort":
                hist.e2e.observe(now - done.arrival)
                if done.queue_time is not None:
                    hist.queue.observe(done.queue_time)
            if stream is not None:
                stream.finish_reason = done.reason
                stream.notify()
