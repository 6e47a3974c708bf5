"""The request schedule, computed up front from a workload and a seed.

Open loop: every request has its send time, fixed before the run starts and kept whatever the
server does. Closed loop (fixed concurrency): the order and content are fixed; send times follow
completions. The same workload and seed give the same schedule, so both sides of a comparison
receive identical requests.

Every random aspect (arrivals, model, lengths, prefix membership, text) draws from its own stream
spawned from the seed, so overriding the rate changes the send times and nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from loadtest.workload.model import Arrival, LengthDist, Workload, WorkloadError
from loadtest.workload.prompts import CHARS_PER_TOKEN, marker, words

# Closed loop with a duration cannot know how many requests it will send; it gets this many per
# unit of concurrency and second (enough for 50 ms requests), capped; when they run out, the run
# ends early.
_CLOSED_LOOP_PER_SLOT_SECOND = 20
_MAX_REQUESTS = 1_000_000
_MIN_CORPUS_TOKENS = 1 << 16


@dataclass(frozen=True, slots=True)
class ScheduledRequest:
    index: int
    # Send time in seconds from the start of the run (0 for every request in closed loop).
    at_s: float
    model: str
    # Target prompt length in tokens, shared prefix included.
    prompt_tokens: int
    max_tokens: int
    # Which shared prefix the prompt starts with, or -1.
    prefix_group: int
    # Where this request's own text starts in the schedule's corpus, in tokens.
    text_offset: int


@dataclass(frozen=True)
class Schedule:
    workload: Workload
    seed: int
    requests: tuple[ScheduledRequest, ...] = field(repr=False)
    arrival: Arrival
    # Closed loop only: stop sending new requests after this many seconds.
    duration_s: float | None = None
    prefixes: tuple[str, ...] = field(default=(), repr=False)
    corpus: str = field(default="", repr=False, compare=False)

    @property
    def closed_loop(self) -> bool:
        return self.arrival.closed_loop

    @property
    def concurrency(self) -> int | None:
        return self.arrival.concurrency if self.closed_loop else None

    @property
    def span_s(self) -> float:
        """Seconds from the first to the last scheduled send (open loop)."""
        return self.requests[-1].at_s if self.requests and not self.closed_loop else 0.0

    def prompt(self, request: ScheduledRequest) -> str:
        """The prompt text of `request`: its shared prefix, then its own text."""
        prefix = self.prefixes[request.prefix_group] if request.prefix_group >= 0 else ""
        own_tokens = request.prompt_tokens - len(prefix) // CHARS_PER_TOKEN
        start = request.text_offset * CHARS_PER_TOKEN
        body = self.corpus[start : start + max(own_tokens - 2, 0) * CHARS_PER_TOKEN]
        return prefix + (marker(request.index) + body)[: own_tokens * CHARS_PER_TOKEN]

    def prompt_encoder(
        self, encode: Callable[[str], list[int]]
    ) -> Callable[[ScheduledRequest], list[int]]:
        """A fast `lambda r: encode(self.prompt(r))` for word-level tokenizers (one token per
        corpus word, as the simulator's): the corpus and prefixes are encoded once and each
        prompt is sliced from them. Any other tokenizer gets the plain composition."""
        corpus_ids = encode(self.corpus)
        if len(corpus_ids) * CHARS_PER_TOKEN != len(self.corpus):
            return lambda request: encode(self.prompt(request))
        prefix_ids = [encode(prefix) for prefix in self.prefixes]

        def ids(request: ScheduledRequest) -> list[int]:
            head = prefix_ids[request.prefix_group] if request.prefix_group >= 0 else []
            own = request.prompt_tokens - len(head)
            start = request.text_offset
            body = corpus_ids[start : start + max(own - 2, 0)]
            return head + (encode(marker(request.index)) + body)[: max(own, 0)]

        return ids

    def describe(self) -> str:
        mode = self.arrival.describe()
        if self.closed_loop:
            closed = f"concurrency {self.concurrency} (closed loop: sends wait for completions)"
            if self.duration_s:
                return f"{closed} for {self.duration_s:g}s"
            return f"{closed}, {len(self.requests)} requests"
        return f"{mode}, {len(self.requests)} requests over {self.span_s:.1f}s (open loop)"


def build_schedule(
    workload: Workload,
    *,
    seed: int | None = None,
    rate: float | None = None,
    concurrency: int | None = None,
    duration: float | None = None,
    requests: int | None = None,
) -> Schedule:
    """The deterministic schedule of `workload` under `seed` (default: the workload's).

    `rate` (req/s, open loop) or `concurrency` (closed loop) overrides the arrival process;
    `duration` (s) or `requests` (a count) overrides how much is sent.
    """
    if rate is not None and concurrency is not None:
        raise WorkloadError("give a rate or a concurrency, not both")
    if duration is not None and requests is not None:
        raise WorkloadError("give a duration or a request count, not both")
    if rate is not None and rate <= 0:
        raise WorkloadError(f"rate must be positive, got {rate}")
    if concurrency is not None and concurrency < 1:
        raise WorkloadError(f"concurrency must be at least 1, got {concurrency}")
    if duration is not None and duration <= 0:
        raise WorkloadError(f"duration must be positive, got {duration}")
    if requests is not None and requests < 1:
        raise WorkloadError(f"requests must be at least 1, got {requests}")
    seed = workload.seed if seed is None else seed
    arrival = _arrival(workload.arrival, rate, concurrency)
    if duration is None and requests is None:
        duration, requests = workload.duration_s, workload.requests
    seeds = np.random.SeedSequence(seed).spawn(6)
    streams = [np.random.default_rng(s) for s in seeds]
    at = _send_times(seeds[0], arrival, duration, requests)
    n = len(at)
    prompt_own = _lengths(streams[2], workload.prompt_tokens, n)
    output = _lengths(streams[3], workload.output_tokens, n)
    models = [name for name, _ in workload.models]
    if workload.phases:
        if arrival.closed_loop:
            raise WorkloadError(
                "phases: a mix that changes over time needs an open-loop arrival (a rate); "
                "a closed loop has no send times to place the phases on"
            )
        model_index = _phased_models(streams[1], workload, models, at)
    else:
        shares = np.array([share for _, share in workload.models])
        model_index = streams[1].choice(len(models), size=n, p=shares / shares.sum())
    groups, prefixes = _prefixes(streams[4], workload, n)
    corpus_tokens = max(_MIN_CORPUS_TOKENS, int(prompt_own.max(initial=0)) * 2)
    offsets = streams[5].integers(0, corpus_tokens - prompt_own + 1)
    corpus = words(streams[5], corpus_tokens)
    prefix_tokens = workload.shared_prefix.tokens if workload.shared_prefix else 0
    built = tuple(
        ScheduledRequest(
            index=i,
            at_s=float(at[i]),
            model=models[model_index[i]],
            prompt_tokens=int(prompt_own[i]) + (prefix_tokens if groups[i] >= 0 else 0),
            max_tokens=int(output[i]),
            prefix_group=int(groups[i]),
            text_offset=int(offsets[i]),
        )
        for i in range(n)
    )
    return Schedule(
        workload=workload,
        seed=seed,
        requests=built,
        arrival=arrival,
        duration_s=duration if arrival.closed_loop else None,
        prefixes=prefixes,
        corpus=corpus,
    )


def _arrival(arrival: Arrival, rate: float | None, concurrency: int | None) -> Arrival:
    if concurrency is not None:
        return Arrival(process="concurrency", concurrency=concurrency)
    if rate is None:
        return arrival
    if arrival.process == "concurrency":
        return Arrival(process="poisson", rate=rate)
    if arrival.process == "bursts":
        return replace(arrival, rate=rate, burst_interval_s=arrival.burst_size / rate)
    return replace(arrival, rate=rate)


def _send_times(
    seed: np.random.SeedSequence, arrival: Arrival, duration: float | None, requests: int | None
) -> np.ndarray:
    if arrival.closed_loop:
        assert arrival.concurrency is not None
        if requests is None:
            assert duration is not None
            requests = math.ceil(arrival.concurrency * duration * _CLOSED_LOOP_PER_SLOT_SECOND)
        return np.zeros(min(requests, _MAX_REQUESTS))
    assert arrival.rate is not None
    if requests is None:
        assert duration is not None
        if arrival.rate * duration > _MAX_REQUESTS:
            raise WorkloadError(f"rate x duration exceeds {_MAX_REQUESTS:,} requests")
        # Draw a comfortable surplus, keep what falls inside the duration.
        count = int(arrival.rate * duration * 1.2 + 10 * math.sqrt(arrival.rate * duration) + 10)
        at = _times(seed, arrival, count)
        while at[-1] < duration and count < _MAX_REQUESTS:
            count *= 2
            at = _times(seed, arrival, count)
        return at[at < duration]
    return _times(seed, arrival, min(requests, _MAX_REQUESTS))


def _times(seed: np.random.SeedSequence, arrival: Arrival, count: int) -> np.ndarray:
    """`count` send times starting at 0; a larger count extends the same sequence."""
    rng = np.random.default_rng(seed)
    rate = arrival.rate or 1.0
    if arrival.process == "bursts":
        return np.repeat(np.arange(-(-count // arrival.burst_size)), arrival.burst_size)[
            :count
        ] * float(arrival.burst_interval_s)
    if arrival.process == "constant":
        gaps = np.full(count, 1.0 / rate)
    elif arrival.process == "gamma":
        shape = arrival.burstiness
        gaps = rng.gamma(shape, 1.0 / (rate * shape), size=count)
    else:
        gaps = rng.exponential(1.0 / rate, size=count)
    times: np.ndarray = np.cumsum(gaps) - gaps[0]
    return times


def _phased_models(
    rng: np.random.Generator, workload: Workload, models: list[str], at: np.ndarray
) -> np.ndarray:
    """Each request's model, drawn from the mix of the phase its send time falls in (the
    phases repeat); one uniform draw per request, so a request keeps its draw when only the
    phases change."""
    ends = np.cumsum([phase.duration_s for phase in workload.phases])
    phase_of = np.searchsorted(ends, np.mod(at, ends[-1]), side="right")
    where = {name: i for i, name in enumerate(models)}
    cumulative = np.zeros((len(workload.phases), len(models)))
    for p, phase in enumerate(workload.phases):
        for name, share in phase.models:
            if name in where:
                cumulative[p, where[name]] = share
    cumulative = np.cumsum(cumulative, axis=1)
    cumulative /= cumulative[:, -1:]
    draws = rng.random(len(at))
    chosen: np.ndarray = np.minimum(
        (draws[:, None] >= cumulative[phase_of]).sum(axis=1), len(models) - 1
    )
    return chosen


def _lengths(rng: np.random.Generator, dist: LengthDist, n: int) -> np.ndarray:
    high = dist.high if dist.high is not None else np.iinfo(np.int64).max
    if dist.kind == "fixed":
        return np.full(n, dist.value, dtype=np.int64)
    if dist.kind == "uniform":
        return rng.integers(dist.low, high, size=n, endpoint=True)
    if dist.kind == "empirical":
        return rng.choice(np.array(dist.values, dtype=np.int64), size=n)
    draws = dist.median * np.exp(dist.spread * rng.standard_normal(n))
    return np.clip(np.rint(draws), max(dist.low, 1), high).astype(np.int64)


def _prefixes(
    rng: np.random.Generator, workload: Workload, n: int
) -> tuple[np.ndarray, tuple[str, ...]]:
    shared = workload.shared_prefix
    if shared is None or shared.fraction == 0:
        return np.full(n, -1), ()
    member = rng.random(n) < shared.fraction
    groups = np.where(member, rng.integers(0, shared.groups, size=n), -1)
    prefixes = tuple(words(rng, shared.tokens) for _ in range(shared.groups))
    return groups, prefixes
