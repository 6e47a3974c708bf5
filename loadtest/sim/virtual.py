"""A fleet of engine models in virtual time, routed by a real strategy through the real pool.

No HTTP and no sleeping: the clock jumps from event to event (an arrival, the end of a
replica's step, the start or end of a metrics scrape). The routing state is the gateway's own
`routers.pool.ReplicaPool` on a virtual clock, driven the way the gateway drives it: the
proxy's acquire / first byte / release, and the poller's staggered scrapes (replica i of n
first at i/n of an interval, then every interval), each taking `scrape_latency` seconds with
what was sent meanwhile kept credited, and failing where `scrape_fails` says so. The strategy
hears the same hooks as in the gateway. So a strategy judged here sees what it would see
there, herding on stale metrics included.
"""

import heapq
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from loadtest.sim.engine import EngineModel, RequestRejected
from loadtest.sim.engine_kind import Engine
from loadtest.sim.engines import VirtualReplica, build_engines
from loadtest.sim.types import EngineStats, FinishedRequest, SimRequest
from routers import prompt
from routers.pool import Replica, ReplicaPool, ScrapeMark
from routers.types import Metrics, Outcome, RouteRequest, Strategy

RecordStatus = Literal["ok", "rejected", "no_replica"]
# Tokens per prefix-hash block: vLLM's default KV block.
HASH_BLOCK_TOKENS = 16
# Event kinds, in the order they run when they fall on the same instant.
_STEP_END, _SCRAPE_END, _SCRAPE_BEGIN = 0, 1, 2


@dataclass(frozen=True, slots=True)
class VirtualRequest:
    """One request of the workload, at `time` seconds of virtual time."""

    time: float
    model: str
    prompt_token_ids: list[int]
    max_tokens: int | None = None
    ignore_eos: bool = False
    stop_length: int | None = None
    seed: int | None = None
    id: str | None = None
    session: str | None = None


@dataclass(frozen=True, slots=True)
class VirtualRecord:
    """What became of one arrival. Times in seconds; None where it never got that far."""

    id: str
    model: str
    arrival: float
    replica: str | None
    status: RecordStatus
    finish_reason: str | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0
    queue_time: float | None = None
    ttft: float | None = None
    e2e: float | None = None
    mean_itl: float | None = None
    preemptions: int = 0


@dataclass(frozen=True, slots=True)
class ScrapeSample:
    """What one scrape read (kept when `run_virtual(keep_samples=True)`)."""

    at: float
    replica: str
    metrics: Metrics


@dataclass(frozen=True, slots=True)
class VirtualResult:
    """The records of a run, in arrival order, with how long it took in virtual time."""

    records: list[VirtualRecord]
    sim_seconds: float  # virtual time from the first arrival to the last finish
    steps: int
    # Each replica's engine counters at the end (prefix cache, preemptions, tokens).
    engines: dict[str, EngineStats] = field(default_factory=dict)
    samples: list[ScrapeSample] = field(default_factory=list)


def metrics_of(stats: EngineStats) -> Metrics:
    """What the gateway's parser reads from this engine's /metrics page (the exposition in
    loadtest.sim.exposition; a contract test checks the two agree)."""
    queries = stats.prefix_queries
    return Metrics(
        waiting=float(stats.waiting),
        running=float(stats.running),
        kv_usage=stats.kv_usage,
        prefix_hit_rate=stats.prefix_hits / queries if queries > 0 else None,
    )


def route_request(
    arrival: VirtualRequest, request_id: str, now: float | None = None
) -> RouteRequest:
    """The RouteRequest the gateway would build: size from the token count, prefix hashes
    over 16-token blocks of the ids, routed at `now` (virtual seconds)."""
    ids = arrival.prompt_token_ids[: prompt.MAX_BLOCKS * HASH_BLOCK_TOKENS]
    raw = array("q", ids).tobytes()
    blocks = prompt.text_blocks(raw, HASH_BLOCK_TOKENS * 8)
    return RouteRequest(
        model=arrival.model,
        stream=True,
        prompt_tokens_estimate=len(arrival.prompt_token_ids),
        max_tokens=arrival.max_tokens,
        request_id=request_id,
        prefix_hashes=prompt.chained_hashes(blocks),
        session=arrival.session,
        now=now,
    )


def run_virtual(
    specs: Sequence[VirtualReplica],
    strategy: Strategy,
    arrivals: Iterable[VirtualRequest],
    *,
    poll_interval: float = 1.0,
    stale_after: float | None = None,
    scrape_latency: float = 0.0,
    scrape_fails: Callable[[str, float], bool] | None = None,
    keep_samples: bool = False,
    concurrency: int | None = None,
    stop_sending_after: float | None = None,
) -> VirtualResult:
    """Play `arrivals` (in time order; any iterable) through the fleet; a record per arrival.

    The pool marks a scrape older than `stale_after` (default 3 poll intervals, as the
    gateway does) stale. `scrape_fails(replica, time)` says whether a scrape beginning then
    fails (default: none do).

    Closed loop: with `concurrency` N the arrivals' times are ignored; N are sent at once and
    each answer (or refusal) sends the next at that instant, as `loadtest run --concurrency`
    does live; none is sent after `stop_sending_after` seconds.
    """
    if concurrency is not None and concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if poll_interval <= 0 or scrape_latency < 0 or scrape_latency >= poll_interval:
        raise ValueError("need poll_interval > 0 and 0 <= scrape_latency < poll_interval")
    engines = {
        spec.name: (spec.model or profile.model, engine)
        for spec, profile, engine in build_engines(specs)
    }
    stale = 3.0 * poll_interval if stale_after is None else stale_after
    run = _FleetRun(engines, strategy, poll_interval, stale, scrape_latency, scrape_fails)
    run.samples = [] if keep_samples else None
    if concurrency is not None:
        run.open_slots = concurrency
        return run.play(_released(arrivals, run, stop_sending_after))
    return run.play(arrivals)


def _released(
    templates: Iterable[VirtualRequest], run: "_FleetRun", stop_after: float | None
) -> Iterator[VirtualRequest | None]:
    """Closed loop: each request sent when a slot is free, at that instant (the run frees a
    slot when an answer ends). None is yielded while no slot is free; the run then plays
    events until one is."""
    for template in templates:
        while not run.open_slots:
            yield None  # the run's cue to play on
        if stop_after is not None and run.now > stop_after:
            return
        run.open_slots -= 1
        yield replace(template, time=run.now)


class VirtualScrapes:
    """The gateway poller's dealings with the pool, on a virtual clock: a scrape takes the
    pool's mark as it begins, and records what it read (or its failure) when it ends."""

    def __init__(self, pool: ReplicaPool[Any]) -> None:
        self.pool = pool
        # Scrapes under way: replica -> (mark, what was read, None if the scrape fails).
        self.under_way: dict[str, tuple[ScrapeMark, Metrics | None]] = {}

    def begin(self, name: str, read: Metrics | None) -> None:
        self.under_way[name] = (self.pool.scrape_mark(name), read)

    def end(self, name: str) -> None:
        mark, read = self.under_way.pop(name)
        if read is None:
            self.pool.record_scrape_failure(name)
        else:
            self.pool.record_metrics(name, read, mark=mark)


class _Engine:
    """One replica's engine and where its current step stands."""

    __slots__ = ("busy", "emits", "engine", "finishing", "first", "name", "until")

    def __init__(self, name: str, engine: Engine) -> None:
        self.name = name
        self.engine = engine
        self.busy = False
        self.until = 0.0  # when the current step ends
        self.finishing: tuple[FinishedRequest, ...] = ()
        self.first: tuple[str, ...] = ()
        self.emits = False  # the current step sends tokens


class _FleetRun:
    """The event loop: arrivals, step ends and scrapes, in time order."""

    def __init__(
        self,
        engines: dict[str, tuple[str, Engine]],
        strategy: Strategy,
        poll_interval: float,
        stale: float,
        scrape_latency: float,
        scrape_fails: Callable[[str, float], bool] | None,
    ) -> None:
        self.now = 0.0
        self.pool: ReplicaPool[Replica] = ReplicaPool(
            (
                Replica(id=name, url=f"virtual://{name}", models=(model,))
                for name, (model, _) in engines.items()
            ),
            stale_after=stale,
            clock=lambda: self.now,
        )
        self.engines = {name: _Engine(name, engine) for name, (_, engine) in engines.items()}
        self.strategy = strategy
        self.on_finished = getattr(strategy, "on_request_finished", None)
        self.poll_interval = poll_interval
        self.scrape_latency = scrape_latency
        self.scrape_fails = scrape_fails
        # (time, kind, sequence, replica): sequence keeps the order stable and total.
        self.events: list[tuple[float, int, int, str]] = []
        self.sequence = 0
        self.step_count = 0
        self.scrapes = VirtualScrapes(self.pool)
        self.samples: list[ScrapeSample] | None = None
        self.routed: dict[str, tuple[RouteRequest, str]] = {}
        # Closed loop only: requests that may be sent now (None: open loop).
        self.open_slots: int | None = None
        self.records: dict[str, VirtualRecord] = {}
        # What is arriving, for a harness strategy that reads the true state (the oracle).
        self.arriving: VirtualRequest | None = None
        attach = getattr(strategy, "attach_fleet", None)
        if attach is not None:
            attach(self)
        added = getattr(strategy, "on_replica_added", None)
        names = [replica.id for replica in self.pool]
        for i, name in enumerate(names):
            if added is not None:
                added(name)
            self._push(poll_interval * i / len(names), _SCRAPE_BEGIN, name)

    def _push(self, at: float, kind: int, name: str) -> None:
        self.sequence += 1
        heapq.heappush(self.events, (at, kind, self.sequence, name))

    def play(self, arrivals: Iterable[VirtualRequest | None]) -> VirtualResult:
        events = self.events
        pending = iter(arrivals)  # may be a generator: 100k prompts need not sit in memory
        arrival = next(pending, None)
        first = last = arrival.time if arrival is not None else 0.0
        closed = self.open_slots is not None
        while True:
            if closed and arrival is None:
                arrival = next(pending, None)  # sent at once if a slot is free, else None
            if arrival is None and not self.routed:
                break
            if arrival is None or events[0][0] <= arrival.time:
                at, kind, _, name = heapq.heappop(events)
                self.now = at
                if kind == _STEP_END:
                    self._end_step(self.engines[name])
                    last = at
                elif kind == _SCRAPE_BEGIN:
                    self._begin_scrape(name)
                else:
                    self.scrapes.end(name)
                continue
            if arrival.time < self.now:
                raise ValueError(
                    f"arrivals must come in time order ({arrival.time} after {self.now})"
                )
            self.now = arrival.time
            self._arrive(arrival)
            last = max(last, self.now)
            arrival = None if closed else next(pending, None)
        return VirtualResult(
            list(self.records.values()),
            last - first,
            self.step_count,
            {name: state.engine.stats() for name, state in self.engines.items()},
            self.samples or [],
        )

    def true_state(self, name: str) -> tuple[EngineModel, float]:
        """Replica `name`'s engine and the seconds until its current step ends (0 if idle):
        what only a harness may read, never a strategy of the gateway. vLLM engines only: the
        oracle predicts with vLLM's scheduler."""
        state = self.engines[name]
        if not isinstance(state.engine, EngineModel):
            raise ValueError(f"replica {name} runs a slot engine: the oracle reads vLLM's only")
        return state.engine, (state.until - self.now) if state.busy else 0.0

    # -- the poller ------------------------------------------------------------------

    def _begin_scrape(self, name: str) -> None:
        fails = self.scrape_fails is not None and self.scrape_fails(name, self.now)
        read = None if fails else metrics_of(self.engines[name].engine.stats())
        if read is not None and self.samples is not None:
            self.samples.append(ScrapeSample(self.now, name, read))
        self.scrapes.begin(name, read)
        if self.scrape_latency > 0:
            self._push(self.now + self.scrape_latency, _SCRAPE_END, name)
        else:
            self.scrapes.end(name)
        self._push(self.now + self.poll_interval, _SCRAPE_BEGIN, name)

    # -- the proxy -------------------------------------------------------------------

    def _arrive(self, arrival: VirtualRequest) -> None:
        request_id = arrival.id or f"req-{len(self.records)}"
        route = route_request(arrival, request_id, self.now)
        self.arriving = arrival
        # Views built as the strategy reads them: nothing changes the pool until it has
        # chosen, and one sampling 32 of 100 replicas reads only those.
        candidates = self.pool.lazy_candidates(arrival.model)
        chosen = self.strategy.choose(route, candidates) if candidates else None
        if chosen is None:
            record = VirtualRecord(request_id, arrival.model, self.now, None, "no_replica")
            self.records[request_id] = record
            self._slot_freed()
            return
        name = chosen.id
        tokens = route.prompt_tokens_estimate
        self.pool.acquire(name, tokens)
        try:
            self.engines[name].engine.add(_sim_request(arrival, request_id, self.now), self.now)
        except RequestRejected:
            # The replica answers 400 at once: no first byte of a generation, not ok.
            self.pool.release(name, tokens, answered=False)
            self.records[request_id] = VirtualRecord(
                request_id, arrival.model, self.now, name, "rejected"
            )
            if self.on_finished is not None:
                self.on_finished(route, Outcome(name, False, None))
            self._slot_freed()
            return
        # A placeholder until it finishes: keeps the records in arrival order.
        self.records[request_id] = VirtualRecord(request_id, arrival.model, self.now, name, "ok")
        self.routed[request_id] = (route, arrival.model)
        state = self.engines[name]
        if not state.busy:
            self._start_step(state)

    def _slot_freed(self) -> None:
        if self.open_slots is not None:
            self.open_slots += 1

    def _start_step(self, state: _Engine) -> None:
        result = state.engine.step(self.now)
        self.step_count += 1
        state.busy = True
        state.finishing = result.finished
        state.first = result.first_token
        state.emits = bool(result.emitted)
        state.until = self.now + result.duration
        self._push(state.until, _STEP_END, state.name)

    def _end_step(self, state: _Engine) -> None:
        pool = self.pool
        if state.emits:  # every request streams here: the relay would see the step's tokens
            pool.tokens(state.name)
        for request_id in state.first:
            route, _ = self.routed[request_id]
            pool.first_byte(state.name, route.prompt_tokens_estimate)
        for done in state.finishing:
            route, model = self.routed.pop(done.id)
            pool.release(
                state.name, route.prompt_tokens_estimate, answered=done.first_token is not None
            )
            self.records[done.id] = _record(done, model, state.name)
            if self.on_finished is not None:
                ok = done.reason != "abort"
                self.on_finished(route, Outcome(state.name, ok, done.ttft))
            self._slot_freed()
        state.finishing = state.first = ()
        if state.engine.has_work():
            self._start_step(state)
        else:
            state.busy = False


def _sim_request(arrival: VirtualRequest, request_id: str, now: float) -> SimRequest:
    return SimRequest(
        id=request_id,
        prompt_token_ids=arrival.prompt_token_ids,
        max_tokens=arrival.max_tokens,
        ignore_eos=arrival.ignore_eos,
        stop_length=arrival.stop_length,
        seed=arrival.seed,
        arrival=now,
    )


def _record(done: FinishedRequest, model: str, replica: str) -> VirtualRecord:
    return VirtualRecord(
        id=done.id,
        model=model,
        arrival=done.arrival,
        replica=replica,
        status="ok",
        finish_reason=done.reason,
        prompt_tokens=done.prompt_tokens,
        output_tokens=done.output_tokens,
        queue_time=done.queue_time,
        ttft=done.ttft,
        e2e=done.e2e,
        mean_itl=done.mean_itl,
        preemptions=done.preemptions,
    )
