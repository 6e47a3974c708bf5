"""The engine of Ollama and llama.cpp's llama-server: a fixed number of slots, in simulated time.

Pure, like engine.py, and driven the same way (`add`, `step(now)`, `abort`, `stats`).
What differs from vLLM, from the upstream sources:

- Slots. `max_num_seqs` slots (OLLAMA_NUM_PARALLEL, llama-server's -np); a request waits in
  FIFO order for a free one. Each slot owns `context` tokens of KV, reserved at start
  (Ollama: num_ctx per slot; llama-server: n_ctx / n_slots), so nothing is paged, shared or
  preempted, and the KV held never exceeds slots x context.
- Long prompts. Ollama keeps the last tokens of a prompt longer than the slot's context
  (runner/ollamarunner/runner.go NewSequence, "truncating input prompt") and shifts the
  context while generating; llama-server refuses it ("the request exceeds the available
  context size"). Attention never reads more than the slot's context.
- One forward pass a step, of at most `batch_tokens` tokens:
  - ollama (runner/ollamarunner/runner.go processBatch): slots in turn from where the last
    pass stopped; each adds its next token (decoding) or as much of its prompt as fits
    (512 tokens by default, num_batch); the first slot that got nothing starts the next
    pass. A long prompt therefore holds back the other slots' decoding.
  - llamacpp (tools/server/server-context.cpp update_slots): every decoding slot's token
    first, then prompts in slot order up to n_batch (2048 by default).
- Prompt cache. A request takes the free slot whose last prompt shares the longest prefix
  with its own (Ollama's LoadCacheSlot), and computes only the rest (at least one token);
  compared in 16-token blocks here.

Steps cost what the profile's roofline says (`Profile.step_time`), as in vLLM.
"""

from collections import deque
from typing import Literal

from loadtest.sim.engine import IDLE_STEP_SECONDS, EngineConfig, RequestRejected
from loadtest.sim.kvcache import block_hashes
from loadtest.sim.profiles import Profile
from loadtest.sim.types import (
    FINISH_REASONS,
    EngineStats,
    FinishedRequest,
    FinishReason,
    SimRequest,
    StepResult,
    finished_request,
)

BLOCK = 16
Policy = Literal["ollama", "llamacpp"]


class _Seq:
    """One request in a slot or waiting for one."""

    __slots__ = (
        "arrival",
        "computed",
        "final",
        "first_token",
        "hashes",
        "id",
        "out",
        "prompt_len",
        "reason",
        "scheduled",
        "slot",
    )

    def __init__(self, request: SimRequest, prompt_len: int, final: int, reason: FinishReason):
        self.id = request.id
        self.arrival = request.arrival
        self.prompt_len = prompt_len
        self.final = final
        self.reason: FinishReason = reason
        self.hashes: list[int] = []
        self.computed = 0
        self.out = 0
        self.slot = -1
        self.scheduled: float | None = None
        self.first_token: float | None = None

    def context(self, limit: int) -> int:
        return min(self.prompt_len + self.out, limit)


class SlotEngine:
    """Fixed slots with their own KV, one forward pass a step (see the module docstring)."""

    def __init__(self, profile: Profile, config: EngineConfig, policy: Policy) -> None:
        if config.kv_mode != "static":
            raise ValueError(f"the {policy} engine has fixed slots: no elastic KV pool")
        if config.max_num_seqs < 1:
            raise ValueError("max_num_seqs (the slots) must be positive")
        self.profile = profile
        self.config = config
        self.policy = policy
        slots = config.max_num_seqs
        if config.num_blocks is not None:
            self.context = config.num_blocks * config.block_size // slots
        else:
            self.context = profile.slot_context or profile.max_model_len
        if self.context < 2:
            raise ValueError(f"{slots} slots leave {self.context} tokens of context each")
        need = profile.weight_bytes + slots * self.context * profile.kv_bytes_per_token
        have = profile.gpu_memory_gib * 1024**3 * profile.gpus
        if profile.gpu_memory_gib and need > have:
            raise ValueError(
                f"{slots} slots of {self.context} tokens need {need / 1024**3:.1f} GiB with the "
                f"weights; the GPU has {profile.gpu_memory_gib:g} GiB: fewer slots or less context"
            )
        self.budget = profile.batch_tokens or config.max_num_batched_tokens
        self._slots: list[_Seq | None] = [None] * slots
        self._cached: list[list[int]] = [[] for _ in range(slots)]  # each slot's last prompt
        self._waiting: deque[_Seq] = deque()
        self._known: dict[str, _Seq] = {}
        self._aborted: list[FinishedRequest] = []
        self._next = 0
        self._clock = 0.0
        self._prefix_queries = self._prefix_hits = 0
        self._prompt_tokens = self._generation_tokens = 0
        self._finished: dict[str, int] = dict.fromkeys(FINISH_REASONS, 0)

    # -- requests in and out ---------------------------------------------------------

    def add(self, request: SimRequest, now: float) -> None:
        if request.id in self._known:
            raise ValueError(f"request id {request.id!r} is already in the engine")
        if request.prompt_len < 1:
            raise RequestRejected("the prompt must have at least one token")
        if request.max_tokens is not None and request.max_tokens < 1:
            raise RequestRejected("max_tokens must be at least 1")
        prompt_len = request.prompt_len
        if prompt_len >= self.context:
            if self.policy == "llamacpp":
                raise RequestRejected(
                    f"the request exceeds the available context size ({prompt_len} prompt "
                    f"tokens; a slot holds {self.context})"
                )
            prompt_len = self.context - 1  # Ollama keeps the end of the prompt
        limit = request.max_tokens
        if limit is None:
            limit = max(1, self.profile.max_model_len - prompt_len)
        final, reason = limit, "length"
        if not request.ignore_eos and request.resolved_stop_length() <= limit:
            final, reason = max(request.resolved_stop_length(), 1), "stop"
        seq = _Seq(request, prompt_len, final, "stop" if reason == "stop" else "length")
        if self.config.prefix_caching:
            ids = request.prompt_token_ids[request.prompt_len - prompt_len :]
            seq.hashes = block_hashes(ids, BLOCK)
        self._known[seq.id] = seq
        self._waiting.append(seq)
        self._clock = max(self._clock, now)

    def abort(self, request_id: str, now: float | None = None) -> bool:
        seq = self._known.get(request_id)
        if seq is None:
            return False
        if seq.slot < 0:
            self._waiting.remove(seq)
        else:
            self._slots[seq.slot] = None
        self._aborted.append(self._retire(seq, "abort", self._clock if now is None else now))
        return True

    def has_work(self) -> bool:
        return bool(self._known)

    # -- one step --------------------------------------------------------------------

    def step(self, now: float) -> StepResult:
        self._admit(now)
        batch = self._assemble()
        if not batch:
            aborted, self._aborted = self._aborted, []
            return StepResult(IDLE_STEP_SECONDS, finished=tuple(aborted))
        num_tokens = kv_read = pairs = 0
        for seq, size in batch:
            num_tokens += size
            if seq.computed < seq.prompt_len:  # a prompt chunk after `computed` tokens
                kv_read += seq.computed
                pairs += size * seq.computed + size * (size + 1) // 2
            else:
                context = seq.context(self.context)
                kv_read += context
                pairs += context
        duration = self.profile.step_time(num_tokens, kv_read, pairs, len(batch))
        end = now + duration
        self._clock = end
        return self._finish(batch, end, duration, num_tokens)

    def _admit(self, now: float) -> None:
        """Waiting requests take free slots, FIFO; each the free slot that shares the longest
        prompt prefix with it (Ollama's LoadCacheSlot)."""
        while self._waiting:
            free = [i for i, seq in enumerate(self._slots) if seq is None]
            if not free:
                return
            seq = self._waiting.popleft()
            slot, hits = free[0], 0
            if seq.hashes:
                for i in free:
                    shared = _common(self._cached[i], seq.hashes)
                    if shared > hits:
                        slot, hits = i, shared
                self._prefix_queries += seq.prompt_len
                self._cached[slot] = seq.hashes
            seq.computed = min(hits * BLOCK, seq.prompt_len - 1)
            self._prefix_hits += seq.computed if seq.hashes else 0
            seq.slot = slot
            seq.scheduled = now
            self._slots[slot] = seq

    def _assemble(self) -> list[tuple[_Seq, int]]:
        """This pass's (sequence, tokens) in the order the engine fills its batch."""
        slots, room = self._slots, self.budget
        batch: list[tuple[_Seq, int]] = []
        if self.policy == "llamacpp":
            for seq in slots:
                if seq is not None and seq.computed >= seq.prompt_len:
                    batch.append((seq, 1))
            room -= len(batch)
            for seq in slots:
                if room <= 0:
                    break
                if seq is not None and seq.computed < seq.prompt_len:
                    size = min(seq.prompt_len - seq.computed, room)
                    batch.append((seq, size))
                    room -= size
            return batch
        count = len(slots)
        resume = -1
        for turn in range(count):
            index = (self._next + turn) % count
            seq = slots[index]
            if seq is None:
                continue
            want = seq.prompt_len - seq.computed if seq.computed < seq.prompt_len else 1
            size = min(want, room)
            if size <= 0:
                if resume < 0:
                    resume = index
                continue
            batch.append((seq, size))
            room -= size
        self._next = resume if resume >= 0 else self._next
        return batch

    def _finish(
        self, batch: list[tuple[_Seq, int]], end: float, duration: float, num_tokens: int
    ) -> StepResult:
        emitted: list[str] = []
        first: list[str] = []
        finished: list[FinishedRequest] = self._aborted
        self._aborted = []
        for seq, size in batch:
            if seq.computed < seq.prompt_len:
                seq.computed += size
                if seq.computed < seq.prompt_len:
                    continue
                seq.first_token = end
                self._prompt_tokens += seq.prompt_len
                first.append(seq.id)
            seq.out += 1
            self._generation_tokens += 1
            emitted.append(seq.id)
            if seq.out >= seq.final:
                self._slots[seq.slot] = None
                finished.append(self._retire(seq, seq.reason, end))
        return StepResult(duration, tuple(emitted), tuple(first), tuple(finished), num_tokens)

    def _retire(self, seq: _Seq, reason: FinishReason, end: float) -> FinishedRequest:
        del self._known[seq.id]
        self._finished[reason] += 1
        return finished_request(seq, reason, end)

    # -- metrics ---------------------------------------------------------------------

    def stats(self) -> EngineStats:
        """Slots busy and waiting; KV usage = tokens held / what the slots reserve."""
        active = [seq for seq in self._slots if seq is not None]
        held = sum(min(seq.computed + seq.out, self.context) for seq in active)
        total_blocks = len(self._slots) * self.context // BLOCK
        used = -(-held // BLOCK)
        return EngineStats(
            waiting=len(self._waiting),
            running=len(active),
            kv_usage=held / (len(self._slots) * self.context),
            prefix_queries=self._prefix_queries,
            prefix_hits=self._prefix_hits,
            preemptions=0,
            prompt_tokens=self._prompt_tokens,
            generation_tokens=self._generation_tokens,
            finished=dict(self._finished),
            num_blocks=total_blocks,
            used_blocks=min(used, total_blocks),
        )


def _common(cached: list[int], hashes: list[int]) -> int:
    """Leading blocks two chained-hash lists share (equal hashes mean equal prefixes)."""
    shared = 0
    for a, b in zip(cached, hashes, strict=False):
        if a != b:
            break
        shared += 1
    return shared
