"""What goes into the engine model and what comes out of it.

All times are seconds on the caller's clock: `time.monotonic()` for the HTTP
server, a virtual clock for `loadtest.sim.virtual`. The engine never reads a clock.
"""

import math
import zlib
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, Protocol

FinishReason = Literal["stop", "length", "abort"]
FINISH_REASONS: tuple[FinishReason, ...] = ("stop", "length", "abort")


@dataclass(frozen=True, slots=True)
class SimRequest:
    """One generation request as the engine sees it.

    `stop_length` is the output length at which the request would emit EOS on its
    own (ignored when `ignore_eos`). None derives it from `seed` (or from the id
    when `seed` is None) with `natural_stop_length`, so runs are reproducible.
    """

    id: str
    prompt_token_ids: list[int]
    max_tokens: int | None = None
    ignore_eos: bool = False
    stop_length: int | None = None
    seed: int | None = None
    arrival: float = 0.0

    @property
    def prompt_len(self) -> int:
        return len(self.prompt_token_ids)

    def resolved_stop_length(self) -> int:
        if self.stop_length is not None:
            return self.stop_length
        seed = self.seed if self.seed is not None else zlib.crc32(self.id.encode())
        return natural_stop_length(seed)


def natural_stop_length(seed: int) -> int:
    """A chat-like answer length (tokens) from a seed: log-normal, median 192, in [8, 2048].

    Uses a splitmix64 hash rather than `random.Random` so it costs about a microsecond.
    """
    x = (seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 31
    # Two 26-bit uniforms -> one standard normal (Box-Muller).
    u1 = ((x >> 38) + 1) / float(1 << 26)
    u2 = ((x >> 12) & ((1 << 26) - 1)) / float(1 << 26)
    normal = math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
    return max(8, min(2048, round(192.0 * math.exp(0.7 * normal))))


@dataclass(frozen=True, slots=True)
class FinishedRequest:
    """A request that left the engine, with the times the server needs for vLLM's histograms.

    `scheduled` is when it was first scheduled (None if it never was), `first_token`
    when its first output token was emitted (None if none was). Inter-token gaps are
    not listed here: the server sees every token in `StepResult.emitted` and times
    them itself; `mean_itl` is the average gap for offline use.
    """

    id: str
    reason: FinishReason
    prompt_tokens: int
    output_tokens: int
    arrival: float
    scheduled: float | None
    first_token: float | None
    finished: float
    preemptions: int = 0

    @property
    def queue_time(self) -> float | None:
        return None if self.scheduled is None else self.scheduled - self.arrival

    @property
    def ttft(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.arrival

    @property
    def e2e(self) -> float:
        return self.finished - self.arrival

    @property
    def mean_itl(self) -> float | None:
        if self.first_token is None or self.output_tokens < 2:
            return None
        return (self.finished - self.first_token) / (self.output_tokens - 1)


class Leaving(Protocol):
    """What an engine knows of a request as it leaves (both engines' request states)."""

    @property
    def id(self) -> str: ...
    @property
    def prompt_len(self) -> int: ...
    @property
    def out(self) -> int: ...
    @property
    def arrival(self) -> float: ...
    @property
    def scheduled(self) -> float | None: ...
    @property
    def first_token(self) -> float | None: ...


def finished_request(
    seq: Leaving, reason: FinishReason, end: float, preemptions: int = 0
) -> FinishedRequest:
    """The record of `seq` leaving the engine at `end`."""
    return FinishedRequest(
        id=seq.id,
        reason=reason,
        prompt_tokens=seq.prompt_len,
        output_tokens=seq.out,
        arrival=seq.arrival,
        scheduled=seq.scheduled,
        first_token=seq.first_token,
        finished=end,
        preemptions=preemptions,
    )


class StepResult(NamedTuple):
    """What one engine step did. Its tokens come out at `now + duration`.

    A NamedTuple rather than a frozen dataclass: one is built per engine step, and
    a tuple is several times cheaper to build.

    `emitted`: ids of requests that produced exactly one output token this step
    (each at most once). `first_token`: the subset whose very first token it is
    (the step completed their prefill). `finished`: requests that finished at the
    end of this step, plus any aborted since the previous step.
    """

    duration: float
    emitted: tuple[str, ...] = ()
    first_token: tuple[str, ...] = ()
    finished: tuple[FinishedRequest, ...] = ()
    num_tokens: int = 0


@dataclass(frozen=True, slots=True)
class EngineStats:
    """Counters (totals since start) and gauges for vLLM's /metrics.

    Token counters are in tokens, like vLLM's `prefix_cache_queries_total` and
    `prefix_cache_hits_total`. `finished` maps each finish reason to its count.
    """

    waiting: int
    running: int
    kv_usage: float
    prefix_queries: int
    prefix_hits: int
    preemptions: int
    prompt_tokens: int
    generation_tokens: int
    finished: dict[str, int] = field(default_factory=dict)
    num_blocks: int = 0
    used_blocks: int = 0
