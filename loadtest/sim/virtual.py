"""A fleet of engine models in virtual time, routed by a real strategy object.

No HTTP and no sleeping: the clock jumps from event to event (an arrival, the end
of a replica's step, a metrics scrape). The strategy is the very object the
gateway runs; it sees `ReplicaView`s built the way the gateway builds them:
gateway-local in-flight counts, requests dispatched since the last scrape, and
engine metrics scraped every `poll_interval` seconds, so the effects of stale
metrics (herding) are reproduced.
"""

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from loadtest.sim.engine import EngineConfig, EngineModel, RequestRejected
from loadtest.sim.kvcache import SharedKVPool
from loadtest.sim.layout import REFERENCE, deployment
from loadtest.sim.profiles import Profile, load_profile
from loadtest.sim.types import FinishedRequest, SimRequest
from routers.types import Metrics, ReplicaView, RouteRequest, Strategy

RecordStatus = Literal["ok", "rejected", "no_replica"]


@dataclass(frozen=True, slots=True)
class VirtualReplica:
    """One simulated replica. Replicas naming the same `pool` share its KV budget (elastic).

    Replicas sharing a pool should use the same profile: the pool counts blocks.
    """

    name: str
    profile: str
    config: EngineConfig = field(default_factory=EngineConfig)
    pool: str | None = None
    model: str | None = None  # the served model name; None = the profile's


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
class VirtualResult:
    """The records of a run, in arrival order, with how long it took in virtual time."""

    records: list[VirtualRecord]
    sim_seconds: float  # virtual time from the first arrival to the last finish
    steps: int


class _SimulatedReplica:
    __slots__ = (
        "busy",
        "dispatched",
        "engine",
        "finishing",
        "in_flight",
        "metrics",
        "models",
        "name",
        "scraped_at",
        "url",
    )

    def __init__(self, name: str, model: str, engine: EngineModel) -> None:
        self.name = name
        self.url = f"virtual://{name}"
        self.models = (model,)
        self.engine = engine
        self.busy = False
        self.finishing: tuple[FinishedRequest, ...] = ()
        self.in_flight = 0
        self.dispatched = 0
        self.metrics: Metrics | None = None
        self.scraped_at = 0.0

    def scrape(self, now: float) -> None:
        stats = self.engine.stats()
        hit_rate = stats.prefix_hits / stats.prefix_queries if stats.prefix_queries else 0.0
        self.metrics = Metrics(stats.waiting, stats.running, stats.kv_usage, hit_rate)
        self.scraped_at = now
        self.dispatched = 0

    def view(self, now: float, stale_after: float) -> ReplicaView:
        age = None if self.metrics is None else now - self.scraped_at
        return ReplicaView(
            id=self.name,
            url=self.url,
            models=self.models,
            healthy=True,
            in_flight=self.in_flight,
            dispatched_since_scrape=self.dispatched,
            metrics=self.metrics,
            metrics_age=age,
            metrics_stale=age is None or age > stale_after,
        )


def build_engines(
    specs: Sequence[VirtualReplica],
) -> list[tuple[VirtualReplica, Profile, EngineModel]]:
    """An engine per spec; elastic replicas naming one pool get one `SharedKVPool`."""
    pools: dict[str, SharedKVPool] = {}
    built = []
    for spec in specs:
        profile = load_profile(spec.profile)
        pool = None
        if spec.pool is not None:
            if spec.pool not in pools:
                blocks = profile.kv_blocks(spec.config.block_size, elastic=True)
                pools[spec.pool] = SharedKVPool(spec.pool, blocks)
            pool = pools[spec.pool]
        built.append((spec, profile, EngineModel(profile, spec.config, pool)))
    return built


def run_virtual(
    specs: Sequence[VirtualReplica],
    strategy: Strategy,
    arrivals: Iterable[VirtualRequest],
    *,
    poll_interval: float = 1.0,
    stale_after: float | None = None,
) -> VirtualResult:
    """Play `arrivals` (in time order; any iterable) through the fleet; a record per arrival.

    Metrics are scraped from every replica at 0, poll_interval, 2*poll_interval...;
    a scrape older than `stale_after` (default 3 poll intervals) is marked stale.
    """
    replicas = [
        _SimulatedReplica(spec.name, spec.model or profile.model, engine)
        for spec, profile, engine in build_engines(specs)
    ]
    stale = 3.0 * poll_interval if stale_after is None else stale_after
    return _FleetRun(replicas, strategy, poll_interval, stale).play(arrivals)


class _FleetRun:
    """The event loop: arrivals, ends of replicas' steps and scrapes, in time order."""

    def __init__(
        self,
        replicas: list[_SimulatedReplica],
        strategy: Strategy,
        poll_interval: float,
        stale: float,
    ) -> None:
        self.replicas = replicas
        self.strategy = strategy
        self.on_finished = getattr(strategy, "on_request_finished", None)
        self.poll_interval = poll_interval
        self.stale = stale
        self.by_model: dict[str, list[int]] = {}
        for index, replica in enumerate(replicas):
            self.by_model.setdefault(replica.models[0], []).append(index)
        self.steps: list[tuple[float, int]] = []  # (end time, replica index) of steps under way
        self.step_count = 0
        self.next_scrape = 0.0
        self.routed: dict[str, tuple[RouteRequest, str]] = {}
        self.records: dict[str, VirtualRecord] = {}

    def play(self, arrivals: Iterable[VirtualRequest]) -> VirtualResult:
        steps = self.steps
        pending = iter(arrivals)  # may be a generator: 100k prompts need not sit in memory
        arrival = next(pending, None)
        first = arrival.time if arrival is not None else 0.0
        now = first
        while arrival is not None or steps:
            if steps and (arrival is None or steps[0][0] <= arrival.time):
                now, index = heapq.heappop(steps)
                if now >= self.next_scrape:
                    self._scrape(now)
                self._end_step(index, now)
                continue
            assert arrival is not None
            if arrival.time < now:
                raise ValueError(f"arrivals must come in time order ({arrival.time} after {now})")
            now = arrival.time
            if now >= self.next_scrape:
                self._scrape(now)
            self._arrive(arrival, now)
            arrival = next(pending, None)
        return VirtualResult(list(self.records.values()), now - first, self.step_count)

    def _scrape(self, now: float) -> None:
        """Run the scrapes due by `now`; after a long idle gap only the last one matters."""
        interval = self.poll_interval
        due = self.next_scrape + (now - self.next_scrape) // interval * interval
        for replica in self.replicas:
            replica.scrape(due)
        self.next_scrape = due + interval

    def _arrive(self, arrival: VirtualRequest, now: float) -> None:
        request_id = arrival.id or f"req-{len(self.records)}"
        route = RouteRequest(
            model=arrival.model,
            stream=True,
            prompt_tokens_estimate=len(arrival.prompt_token_ids),
            max_tokens=arrival.max_tokens,
            request_id=request_id,
        )
        indices = self.by_model.get(arrival.model, [])
        views = [self.replicas[index].view(now, self.stale) for index in indices]
        chosen = self.strategy.choose(route, views)
        index = next((i for i, v in zip(indices, views, strict=True) if v is chosen), None)
        if index is None:
            record = VirtualRecord(request_id, arrival.model, now, None, "no_replica")
            self.records[request_id] = record
            return
        replica = self.replicas[index]
        record = _dispatch(replica, arrival, request_id, now)
        self.records[request_id] = record  # a placeholder until it finishes: keeps the order
        if record.status == "ok":
            self.routed[request_id] = (route, arrival.model)
            if not replica.busy:
                self._start_step(index, now)

    def _start_step(self, index: int, now: float) -> None:
        replica = self.replicas[index]
        result = replica.engine.step(now)
        self.step_count += 1
        replica.busy = True
        replica.finishing = result.finished
        heapq.heappush(self.steps, (now + result.duration, index))

    def _end_step(self, index: int, now: float) -> None:
        replica = self.replicas[index]
        for done in replica.finishing:
            replica.in_flight -= 1
            request, model = self.routed.pop(done.id)
            self.records[done.id] = _record(done, model, replica.name)
            if self.on_finished is not None:
                self.on_finished(request, replica.name, done.reason != "abort")
        replica.finishing = ()
        if replica.engine.has_work():
            self._start_step(index, now)
        else:
            replica.busy = False


def _dispatch(
    replica: _SimulatedReplica, arrival: VirtualRequest, request_id: str, now: float
) -> VirtualRecord:
    request = SimRequest(
        id=request_id,
        prompt_token_ids=arrival.prompt_token_ids,
        max_tokens=arrival.max_tokens,
        ignore_eos=arrival.ignore_eos,
        stop_length=arrival.stop_length,
        seed=arrival.seed,
        arrival=now,
    )
    try:
        replica.engine.add(request, now)
    except RequestRejected:
        return VirtualRecord(request_id, arrival.model, now, replica.name, "rejected")
    replica.in_flight += 1
    replica.dispatched += 1
    return VirtualRecord(request_id, arrival.model, now, replica.name, "ok")


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


def reference_replicas(fleet: str) -> list[VirtualReplica]:
    """The reference layout deployed as `fleet` (loadtest.sim.layout), replicas named
    replica-0..5; elastic ones share one pool per GPU (group)."""
    deployed = deployment(fleet)
    config = EngineConfig(
        prefix_caching=deployed.prefix_caching,
        kv_mode=deployed.kv_mode,
        max_cached_tokens=deployed.max_cached_tokens,
    )
    return [
        VirtualReplica(
            f"replica-{index}", seat.profile, config, seat.gpus if deployed.elastic else None
        )
        for index, seat in enumerate(REFERENCE)
    ]
