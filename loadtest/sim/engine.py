"""The engine model: a vLLM V1-style scheduler over a block KV cache, in simulated time.

Pure: no I/O, no clock. The caller passes `now` and advances its own clock by
each step's `duration` (real time in the HTTP server, virtual time offline).

Per step, like vLLM V1: every running request that is decoding computes one
token; the rest of the `max_num_batched_tokens` budget goes to chunked prefill,
first of running requests that are part way through their prompt, then of
waiting ones in FCFS order (none when this step preempted anything). A request
that cannot get a KV block preempts the most recently admitted running request
(recompute: its blocks are freed and it goes back to the front of the queue).

Decoding is tracked lazily so a step costs O(events), not O(running requests):
a decoding request's output count is a function of the step number, and the
steps at which it needs its next block or finishes are filed under those step
numbers.
"""

from collections import deque
from dataclasses import dataclass
from typing import Literal

from loadtest.sim.gpus import SharedGpu, block_bytes
from loadtest.sim.kvcache import (
    KVCACHED_MAX_CACHED_TOKENS,
    KVCache,
    SharedKVPool,
    block_hashes,
    cached_block_bound,
)
from loadtest.sim.profiles import DEFAULT_GPU_MEMORY_UTILIZATION, Profile
from loadtest.sim.sequence import DECODING, PREFILLING, WAITING, EngineRequest
from loadtest.sim.types import (
    FINISH_REASONS,
    EngineStats,
    FinishedRequest,
    FinishReason,
    SimRequest,
    StepResult,
    finished_request,
)

_Agenda = dict[int, list[tuple[EngineRequest, int]]]  # step -> (request, epoch)
_Chunks = list[tuple[EngineRequest, int]]

# Simulated time a step takes when it can schedule nothing (an elastic pool that
# other replicas have drained): callers then poll instead of spinning.
IDLE_STEP_SECONDS = 0.005


class RequestRejected(ValueError):
    """The request can never run here (too long for the model or the whole cache)."""


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Scheduler and cache settings, named after vLLM's engine arguments.

    `num_blocks` None takes the profile's KV capacity (static) or the shared
    pool's size in this engine's blocks (elastic, where it caps what one replica may hold).
    `max_cached_tokens` is KVCached's KVCACHED_MAX_CACHED_TOKENS: how many tokens
    of freed cached prefixes an elastic replica keeps (-1: no bound, 0: none).
    """

    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    block_size: int = 16
    num_blocks: int | None = None
    prefix_caching: bool = True
    kv_mode: Literal["static", "elastic"] = "static"
    # vLLM's --gpu-memory-utilization: the share of GPU memory weights, activations and KV get.
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION
    max_cached_tokens: int = KVCACHED_MAX_CACHED_TOKENS


class EngineModel:
    """One replica's engine: FCFS waiting queue, running set, chunked prefill, preemption.

    Use: `add(request, now)` when a request arrives; while `has_work()`, call
    `step(now)` and advance the clock by `result.duration`; `abort(id)` when the
    client leaves; `stats()` for /metrics. Engines given one `SharedGpu` share its time
    (loadtest.sim.gpus).
    """

    def __init__(
        self,
        profile: Profile,
        config: EngineConfig,
        pool: SharedKVPool | None = None,
        gpu: SharedGpu | None = None,
    ) -> None:
        if config.max_num_batched_tokens < config.max_num_seqs:
            raise ValueError("max_num_batched_tokens must be at least max_num_seqs")
        if config.max_num_seqs < 1 or config.block_size < 1:
            raise ValueError("max_num_seqs and block_size must be positive")
        if (config.kv_mode == "elastic") != (pool is not None):
            raise ValueError("kv_mode 'elastic' needs a SharedKVPool, and only it takes one")
        block = block_bytes(profile, config.block_size)
        if pool is not None:
            pool_blocks = pool.total_bytes // block
            if pool_blocks < 1:
                raise ValueError(f"KV pool {pool.name} cannot hold one block of {profile.name}")
            num_blocks = min(config.num_blocks or pool_blocks, pool_blocks)
        else:
            num_blocks = config.num_blocks or profile.kv_blocks(
                config.block_size, config.gpu_memory_utilization
            )
        self.profile = profile
        self.config = config
        bound = None
        if pool is not None:
            bound = cached_block_bound(config.max_cached_tokens, config.block_size)
        self.kv = KVCache(
            num_blocks,
            prefix_caching=config.prefix_caching,
            pool=pool,
            max_cached_blocks=bound,
            block_bytes=block,
        )
        self._gpu = gpu
        if gpu is not None:
            gpu.join(self)
        self._block = config.block_size
        # KVCached's step slowdown per running request (profiles.yaml says where it is from).
        self._elastic_slowdown = (
            profile.elastic_full_batch_overhead / config.max_num_seqs if pool else 0.0
        )
        self._waiting: deque[EngineRequest] = deque()
        self._running: dict[str, EngineRequest] = {}  # admission order: the last is preempted first
        self._prefilling: list[EngineRequest] = []
        self._decoding: dict[str, EngineRequest] = {}
        self._known: dict[str, EngineRequest] = {}
        self._finish_at: _Agenda = {}
        self._grow_at: _Agenda = {}
        self._step_no = 0
        self._clock = 0.0
        # Tokens of context held by decoding requests: what a decode step's attention reads.
        self._context = 0
        self._aborted: list[FinishedRequest] = []
        self._prefix_queries = 0
        self._prefix_hits = 0
        self._preemptions = 0
        self._prompt_tokens = 0
        self._generation_tokens = 0
        self._finished: dict[str, int] = dict.fromkeys(FINISH_REASONS, 0)

    # -- requests in and out ---------------------------------------------------------

    def add(self, request: SimRequest, now: float) -> None:
        """Queue a request (arrived at `now`); RequestRejected if it can never run."""
        if request.id in self._known:
            raise ValueError(f"request id {request.id!r} is already in the engine")
        final, reason = self._limit(request)
        seq = EngineRequest(request, final, reason)
        blocks_needed = -(-(seq.prompt_len + seq.final) // self._block)
        if blocks_needed > self.kv.num_blocks:
            raise RequestRejected(
                f"request needs {blocks_needed} KV blocks; this replica has {self.kv.num_blocks}"
            )
        if self.config.prefix_caching:
            seq.hashes = block_hashes(request.prompt_token_ids, self._block)
        self._known[request.id] = seq
        self._waiting.append(seq)
        self._clock = max(self._clock, now)

    def _limit(self, request: SimRequest) -> tuple[int, FinishReason]:
        prompt_len, max_len = request.prompt_len, self.profile.max_model_len
        if prompt_len < 1:
            raise RequestRejected("the prompt must have at least one token")
        if request.max_tokens is not None and request.max_tokens < 1:
            raise RequestRejected("max_tokens must be at least 1")
        room = max_len - prompt_len
        if room < 1 or (request.max_tokens is not None and request.max_tokens > room):
            raise RequestRejected(
                f"this model's maximum context length is {max_len} tokens; the request "
                f"has {prompt_len} prompt tokens and asks for {request.max_tokens} more"
            )
        limit = room if request.max_tokens is None else request.max_tokens
        if not request.ignore_eos:
            stop = request.resolved_stop_length()
            if stop <= limit:
                return max(stop, 1), "stop"
        return limit, "length"

    def abort(self, request_id: str, now: float | None = None) -> bool:
        """Drop a waiting or running request and free its blocks at once.

        Counted as finished_reason "abort"; its FinishedRequest comes out in the
        next step's `finished` (timed at `now`, else at the end of the last step).
        False if the id is unknown or already finished.
        """
        seq = self._known.get(request_id)
        if seq is None:
            return False
        if seq.state == WAITING:
            self._waiting.remove(seq)
        else:
            self._unschedule(seq, self._step_no)
        self._aborted.append(self._retire(seq, "abort", self._clock if now is None else now))
        return True

    def has_work(self) -> bool:
        """True while any request is waiting or running."""
        return bool(self._known)

    def is_running(self) -> bool:
        """True while requests are in the batch (the engine is using its GPU)."""
        return bool(self._running)

    # -- one step --------------------------------------------------------------------

    def step(self, now: float) -> StepResult:
        """Schedule and run one engine step starting at `now`; its tokens come at the end."""
        step = self._step_no = self._step_no + 1
        preempted = self._grow_decoding(step) if step in self._grow_at else False
        chunks: _Chunks = []
        if self._prefilling:
            budget = self.config.max_num_batched_tokens - len(self._decoding)
            preempted = self._continue_prefills(step, budget, chunks) or preempted
        if self._waiting and not preempted:
            budget = self.config.max_num_batched_tokens - len(self._decoding)
            self._admit(now, budget - sum(size for _, size in chunks), chunks)
        num_tokens = len(self._decoding)
        kv_read = pairs = self._context
        for seq, size in chunks:
            num_tokens += size
            kv_read += seq.computed
            pairs += size * seq.computed + size * (size + 1) // 2
        if num_tokens == 0:
            return StepResult(IDLE_STEP_SECONDS, finished=tuple(self._take_aborted()))
        duration = self.profile.step_time(num_tokens, kv_read, pairs)
        if self._gpu is not None:
            busy = self._gpu.busy()
            if busy > 1:  # co-resident engines take turns: the GPU time adds up
                overhead = self.profile.step_overhead_seconds
                duration = overhead + (duration - overhead) * busy
        if self._elastic_slowdown:
            duration *= 1.0 + self._elastic_slowdown * len(self._running)
        end = now + duration
        self._clock = end
        return self._finish_step(step, end, duration, num_tokens, chunks)

    def _continue_prefills(self, step: int, budget: int, chunks: _Chunks) -> bool:
        """Next chunks of running requests part way through their prefill, in admission order."""
        preempted = False
        for seq in tuple(self._prefilling):
            if budget <= 0:
                break
            if seq.state != PREFILLING:  # preempted by an earlier request in this loop
                continue
            size = min(seq.target - seq.computed, budget)
            need = -(-(seq.computed + size) // self._block) - len(seq.blocks)
            while not self.kv.allocate(need, seq.blocks):
                preempted = True
                if self._preempt_last(step - 1) is seq:
                    break
            if seq.state == PREFILLING:
                chunks.append((seq, size))
                budget -= size
        return preempted

    def _grow_decoding(self, step: int) -> bool:
        """Give decoding requests that cross a block boundary this step their next block."""
        allocate_one, block = self.kv.allocate_one, self._block
        preempted = False
        for seq, epoch in self._grow_at.pop(step):
            if epoch != seq.epoch:
                continue
            while not allocate_one(seq.blocks):
                preempted = True
                if self._preempt_last(step - 1) is seq:
                    break
            if seq.state == DECODING and step + block <= seq.end_step:
                self._file(self._grow_at, step + block, seq)
        return preempted

    def _admit(self, now: float, budget: int, chunks: _Chunks) -> None:
        """Start prefilling waiting requests, FCFS, while seats, budget and blocks last."""
        kv, block = self.kv, self._block
        while self._waiting and budget > 0 and len(self._running) < self.config.max_num_seqs:
            seq = self._waiting[0]
            hits = kv.match_prefix(seq.hashes, (seq.target - 1) // block) if seq.hashes else []
            computed = len(hits) * block
            size = min(seq.target - computed, budget)
            need = -(-(computed + size) // block) - len(hits)
            if kv.num_free() < need + kv.extra_for_hits(hits):
                break
            kv.take_hits(hits, seq.blocks)
            kv.allocate(need, seq.blocks)
            self._waiting.popleft()
            if self.config.prefix_caching:
                self._prefix_queries += seq.target
                self._prefix_hits += computed
            seq.computed = computed
            seq.registered = len(hits)
            seq.state = PREFILLING
            if seq.scheduled is None:
                seq.scheduled = now
            self._running[seq.id] = seq
            self._prefilling.append(seq)
            chunks.append((seq, size))
            budget -= size

    def _finish_step(
        self,
        step: int,
        end: float,
        duration: float,
        num_tokens: int,
        chunks: _Chunks,
    ) -> StepResult:
        num_decoding = len(self._decoding)
        self._context += num_decoding
        emitted = tuple(self._decoding)
        joined: list[EngineRequest] = []
        first: list[str] = []
        for seq, size in chunks:
            seq.computed += size
            self._register_blocks(seq)
            if seq.computed == seq.target:
                self._prefilling.remove(seq)
                seq.out += 1
                if seq.first_token is None:
                    seq.first_token = end
                    self._prompt_tokens += seq.prompt_len
                    first.append(seq.id)
                joined.append(seq)
        self._generation_tokens += num_decoding + len(joined)
        if joined:
            emitted += tuple(seq.id for seq in joined)
        finished: list[FinishedRequest] = self._take_aborted() if self._aborted else []
        for seq, epoch in self._finish_at.pop(step, ()):
            if epoch == seq.epoch:
                self._unschedule(seq, step)
                finished.append(self._retire(seq, seq.reason, end))
        for seq in joined:
            self._start_decoding(seq, step)
            if seq.out >= seq.final:
                self._unschedule(seq, step)
                finished.append(self._retire(seq, seq.reason, end))
        return StepResult(
            duration, emitted, tuple(first) if first else (), tuple(finished), num_tokens
        )

    # -- bookkeeping -----------------------------------------------------------------

    def _register_blocks(self, seq: EngineRequest) -> None:
        """Publish the prompt blocks this request has fully computed to the prefix cache."""
        if not seq.hashes:
            return
        full = min(seq.computed // self._block, len(seq.hashes))
        if full > seq.registered:
            self.kv.register(seq.blocks, seq.hashes, seq.registered, full)
            seq.registered = full

    def _start_decoding(self, seq: EngineRequest, step: int) -> None:
        seq.state = DECODING
        seq.start_step = step
        seq.start_out = seq.out
        self._decoding[seq.id] = seq
        self._context += seq.prompt_len + seq.out
        seq.end_step = step + seq.final - seq.out
        if seq.out < seq.final:
            self._file(self._finish_at, seq.end_step, seq)
            self._schedule_growth(seq)

    def _schedule_growth(self, seq: EngineRequest) -> None:
        """Queue the step at which a decoding request needs one more block, if before it ends.

        A decode step s writes the KV of token number prompt_len + out(s - 1), so it
        needs ceil((prompt_len + out(s - 1)) / block_size) blocks.
        """
        need_step = (
            self._block * len(seq.blocks) - seq.prompt_len - seq.start_out + seq.start_step + 2
        )
        if need_step <= seq.end_step:
            self._file(self._grow_at, need_step, seq)

    @staticmethod
    def _file(agenda: _Agenda, step: int, seq: EngineRequest) -> None:
        entry = (seq, seq.epoch)
        bucket = agenda.get(step)
        if bucket is None:
            agenda[step] = [entry]
        else:
            bucket.append(entry)

    def _preempt_last(self, completed_step: int) -> EngineRequest:
        """Preempt the most recently admitted running request back to the queue's front."""
        seq = self._running[next(reversed(self._running))]
        self._unschedule(seq, completed_step)
        seq.computed = seq.registered = 0
        seq.target = seq.prompt_len + seq.out
        seq.preemptions += 1
        seq.state = WAITING
        self._waiting.appendleft(seq)
        self._preemptions += 1
        return seq

    def _unschedule(self, seq: EngineRequest, completed_step: int) -> None:
        """Take a running request out of the batch and free its blocks."""
        if seq.state == DECODING:
            seq.out = seq.start_out + completed_step - seq.start_step
            self._context -= seq.prompt_len + seq.out
            del self._decoding[seq.id]
        elif seq.state == PREFILLING:
            self._prefilling.remove(seq)
        del self._running[seq.id]
        self.kv.free(seq.blocks)
        seq.blocks = []
        seq.epoch += 1

    def _retire(self, seq: EngineRequest, reason: FinishReason, end: float) -> FinishedRequest:
        del self._known[seq.id]
        self._finished[reason] += 1
        return finished_request(seq, reason, end, seq.preemptions)

    def _take_aborted(self) -> list[FinishedRequest]:
        aborted, self._aborted = self._aborted, []
        return aborted

    # -- true state, for the study's oracle ---------------------------------------------

    def prefill_backlog(self) -> int:
        """Prompt tokens still to prefill ahead of a new arrival: the waiting queue's (cache
        hits unknown until admission, so counted in full) and the unfinished chunks'."""
        ahead = 0
        for seq in self._waiting:
            ahead += seq.target - seq.computed
        for seq in self._prefilling:
            ahead += seq.target - seq.computed
        return ahead

    def cached_tokens(self, hashes: list[int], prompt_len: int) -> int:
        """Prompt tokens of a request with these block hashes this engine's cache holds now."""
        if not self.config.prefix_caching:
            return 0
        return len(self.kv.match_prefix(hashes, (prompt_len - 1) // self._block)) * self._block

    def version(self) -> tuple[int, int]:
        """Changes whenever the engine's state may have: a step, a request in or out."""
        return self._step_no, len(self._known)

    def batch(self) -> tuple[int, int, int]:
        """(decoding requests, their context tokens, requests holding a seat)."""
        return len(self._decoding), self._context, len(self._running) + len(self._waiting)

    # -- metrics ---------------------------------------------------------------------

    def stats(self) -> EngineStats:
        """Counters and gauges for vLLM's /metrics, as of the last step."""
        return EngineStats(
            waiting=len(self._waiting),
            running=len(self._running),
            kv_usage=self.kv.usage(),
            prefix_queries=self._prefix_queries,
            prefix_hits=self._prefix_hits,
            preemptions=self._preemptions,
            prompt_tokens=self._prompt_tokens,
            generation_tokens=self._generation_tokens,
            finished=dict(self._finished),
            num_blocks=self.kv.num_blocks,
            used_blocks=self.kv.used_blocks,
        )
