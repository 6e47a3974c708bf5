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

from loadtest.workload.counting import TokenizerChoice, Tokenizers
from loadtest.workload.fitting import FILLER, MARKER_WORDS, compose, fit_lengths
from loadtest.workload.model import Arrival, LengthDist, Workload, WorkloadError
from loadtest.workload.prompts import CHARS_PER_TOKEN, marker, words

# Closed loop with a duration cannot know how many requests it will send; it gets this many per
# unit of concurrency and second (enough for 50 ms requests), capped; when they run out, the run
# ends early.
_CLOSED_LOOP_PER_SLOT_SECOND = 20
_MAX_REQUESTS = 1_000_000
_MIN_CORPUS_TOKENS = 1 << 16
# Words past the last offset: under a real tokenizer a prompt may need a few more words than
# its token target when its shared prefix came out a little short.
_CORPUS_SLACK = 256


@dataclass(frozen=True, slots=True)
class ScheduledRequest:
    index: int
    # Send time in seconds from the start of the run (0 for every request in closed loop).
    at_s: float
    model: str
    # Prompt length in tokens as the server counts it: shared prefix and template included.
    prompt_tokens: int
    max_tokens: int
    # Which shared prefix the prompt starts with, or -1.
    prefix_group: int
    # Where this request's own text starts in the schedule's corpus, in words.
    text_offset: int
    # Words of the prompt (fitted to its model's tokenizer): of the shared prefix, of its
    # own text (a two-word marker, then corpus words), and one-token fillers at the end.
    prefix_words: int = 0
    text_words: int = 0
    fillers: int = 0


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
    # What prompt lengths were fitted to.
    tokenizers: TokenizerChoice = field(default_factory=TokenizerChoice)

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
        group = request.prefix_group
        prefix = (
            self.prefixes[group][: request.prefix_words * CHARS_PER_TOKEN] if group >= 0 else ""
        )
        return compose(
            prefix,
            request.index,
            self.corpus,
            request.text_offset,
            request.text_words,
            request.fillers,
        )

    def prompt_encoder(
        self, encode: Callable[[str], list[int]]
    ) -> Callable[[ScheduledRequest], list[int]]:
        """A fast `lambda r: encode(self.prompt(r))` for word-level tokenizers (one token per
        corpus word, as the simulator's): the corpus and prefixes are encoded once and each
        prompt is sliced from them. Any other tokenizer gets the plain composition."""
        corpus_ids = encode(self.corpus)
        prefix_ids = [encode(prefix) for prefix in self.prefixes]
        word_level = len(corpus_ids) * CHARS_PER_TOKEN == len(self.corpus) and all(
            len(ids) * CHARS_PER_TOKEN == len(prefix)
            for ids, prefix in zip(prefix_ids, self.prefixes, strict=True)
        )
        filler = encode(FILLER)
        if not word_level or len(filler) != 1:
            return lambda request: encode(self.prompt(request))

        def ids(request: ScheduledRequest) -> list[int]:
            group = request.prefix_group
            head = prefix_ids[group][: request.prefix_words] if group >= 0 else []
            start = request.text_offset
            body = corpus_ids[start : start + max(request.text_words - MARKER_WORDS, 0)]
            own = (encode(marker(request.index)) + body)[: request.text_words]
            return head + own + filler * request.fillers

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
    tokenizers: Tokenizers | None = None,
    text_seed: int | None = None,
) -> Schedule:
    """The deterministic schedule of `workload` under `seed` (default: the workload's).

    `rate` (req/s, open loop) or `concurrency` (closed loop) overrides the arrival process;
    `duration` (s) or `requests` (a count) overrides how much is sent; one of them must be
    given here or by the workload. Prompt lengths are exact, chat template included, under
    each model's tokenizer in `tokenizers`, else under the simulator's approximate one.
    `text_seed` (default: the seed) draws the requests' own text alone: the same schedule
    with other words, which a server's prefix cache has not seen (bench/crosscheck.py).
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
    if duration is None and requests is None:
        raise WorkloadError(
            f"workload {workload.name}: give duration (seconds) or requests (a count), in the "
            "workload or as --duration / --requests"
        )
    seeds = np.random.SeedSequence(seed).spawn(6)
    if text_seed is not None and text_seed != seed:
        seeds[5] = np.random.SeedSequence(text_seed).spawn(6)[5]
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
    corpus = words(streams[5], corpus_tokens + _CORPUS_SLACK)
    prefix_tokens = workload.shared_prefix.tokens if workload.shared_prefix else 0
    targets = prompt_own + np.where(groups >= 0, prefix_tokens, 0)
    model_names = [models[m] for m in model_index]
    prefix_words, text_words, fillers = fit_lengths(
        api=workload.api,
        tokenizers=tokenizers,
        models=model_names,
        targets=targets,
        groups=groups,
        offsets=offsets,
        prefixes=prefixes,
        prefix_tokens=prefix_tokens,
        corpus=corpus,
    )
    built = tuple(
        ScheduledRequest(
            index=i,
            at_s=float(at[i]),
            model=model_names[i],
            prompt_tokens=int(targets[i]),
            max_tokens=int(output[i]),
            prefix_group=int(groups[i]),
            text_offset=int(offsets[i]),
            prefix_words=int(prefix_words[i]),
            text_words=int(text_words[i]),
            fillers=int(fillers[i]),
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
        tokenizers=tokenizers.choice if tokenizers is not None else TokenizerChoice(),
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
