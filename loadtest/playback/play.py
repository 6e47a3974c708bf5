"""Play a schedule on a virtual fleet and get what a live run gives: request records, the
engines' counters, and the replicas' queue and KV samples."""

from dataclasses import dataclass, field

from loadtest.drive.records import ErrorKind, RequestRecord
from loadtest.environments.sampler import ReplicaSample
from loadtest.playback.arrivals import virtual_requests
from loadtest.playback.fleets import VirtualFleet
from loadtest.sim.types import EngineStats
from loadtest.sim.virtual import VirtualRecord, VirtualResult, run_virtual
from loadtest.workload.schedule import Schedule

# Statuses a live gateway answers for what the virtual runner records.
_STATUS: dict[str, tuple[int, ErrorKind | None, str | None]] = {
    "ok": (200, None, None),
    "rejected": (400, "http_4xx", "the replica cannot take this request (too long)"),
    "no_replica": (503, "http_5xx", "no replica serves this model"),
}


@dataclass(frozen=True)
class Played:
    """One environment's virtual run of a schedule."""

    fleet: VirtualFleet
    records: list[RequestRecord]
    # The engines' counters summed over replicas, named as a live run's (engine_counters).
    counters: dict[str, float]
    sim_seconds: float
    samples: list[ReplicaSample] = field(default_factory=list)


def play(
    fleet: VirtualFleet, schedule: Schedule, *, seed: int, keep_samples: bool = False
) -> Played:
    """Play `schedule` on `fleet` (a closed loop keeps its concurrency in flight, for its
    duration if it has one); the strategy is seeded with `seed`."""
    result = run_virtual(
        fleet.replicas,
        fleet.new_strategy(seed),
        virtual_requests(schedule),
        poll_interval=fleet.poll_interval,
        keep_samples=keep_samples,
        concurrency=schedule.concurrency,
        stop_sending_after=schedule.duration_s,
    )
    records = [request_record(record) for record in result.records]
    return Played(fleet, records, counters(result.engines), result.sim_seconds, _samples(result))


def request_record(record: VirtualRecord) -> RequestRecord:
    """The record a live run would have kept, sent on time (no generator in virtual time).
    Per-token gaps are not modelled one by one: TPOT is the engine's mean gap."""
    status, kind, error = _STATUS[record.status]
    return RequestRecord(
        index=int(record.id),
        model=record.model,
        scheduled_s=record.arrival,
        sent_s=record.arrival,
        lag_s=0.0,
        status=status,
        error_kind=kind,
        error=error,
        ttft_s=record.ttft,
        tpot_s=record.mean_itl,
        e2e_s=record.e2e,
        prompt_tokens=record.prompt_tokens or None,
        output_tokens=record.output_tokens or None,
        replica=record.replica,
    )


def counters(engines: dict[str, EngineStats]) -> dict[str, float]:
    """Prefix-cache and preemption totals over the replicas, as `engine_counters` reads a
    live fleet's /metrics."""
    stats = list(engines.values())
    totals = {
        "prefix_cache_queries": float(sum(s.prefix_queries for s in stats)),
        "prefix_cache_hits": float(sum(s.prefix_hits for s in stats)),
        "preemptions": float(sum(s.preemptions for s in stats)),
        "prompt_tokens": float(sum(s.prompt_tokens for s in stats)),
    }
    if totals["prefix_cache_queries"] > 0:
        totals["prefix_cache_hit_rate"] = (
            totals["prefix_cache_hits"] / totals["prefix_cache_queries"]
        )
    return totals


def _samples(result: VirtualResult) -> list[ReplicaSample]:
    return [
        ReplicaSample(
            at=sample.at,
            replica=sample.replica,
            waiting=sample.metrics.waiting,
            running=sample.metrics.running,
            kv_usage=sample.metrics.kv_usage,
        )
        for sample in result.samples
    ]
