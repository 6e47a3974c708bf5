"""Both environments in virtual time: their saturation rates, and comparisons at any load."""

from dataclasses import dataclass, replace
from typing import Any

from loadtest.analysis.rise import Rise, ttft_rise
from loadtest.compare.judge import Judged, Runs, judge, measured, schedule_window
from loadtest.compare.options import POINT_REQUESTS, SWEEP_REQUESTS, CompareOptions
from loadtest.playback.capacity import Capacity, capacity
from loadtest.playback.fleets import VirtualFleet
from loadtest.playback.play import Played, play
from loadtest.workload.model import Workload
from loadtest.workload.schedule import Schedule, build_schedule


@dataclass(frozen=True)
class VirtualPoint:
    """One comparison in virtual time, at `load` x A's saturation rate."""

    load: float
    rate: float
    schedule: Schedule
    a: Played
    b: Played
    judged: Judged
    # Each side's median TTFT of the second and the last fifth of arrivals, per model
    # (loadtest.analysis.rise): still rising means past what that fleet sustains.
    rise_a: Rise | None = None
    rise_b: Rise | None = None

    def rising(self) -> list[tuple[str, Rise]]:
        """("a" or "b", its rise) for each side whose TTFT was still rising at the end."""
        sides = (("a", self.rise_a), ("b", self.rise_b))
        return [(side, rise) for side, rise in sides if rise is not None and rise.rising]

    def describe(self) -> str:
        """'load 0.85', or 'concurrency 8, load 0.20' for a closed loop."""
        at = f"load {self.load:.2f}"
        concurrency = self.schedule.concurrency
        return f"concurrency {concurrency}, {at}" if concurrency is not None else at


def compare_at(
    fleets: tuple[VirtualFleet, VirtualFleet],
    workload: Workload,
    schedule: Schedule,
    load: float,
    options: CompareOptions,
    *,
    keep_samples: bool = False,
    unit: float | None = None,
) -> VirtualPoint:
    """Play `schedule` on both fleets (strategies seeded from the schedule's seed, each side
    its own). A closed loop's rate is what A achieved, and its load that over `unit` (A's
    saturation rate) when given."""
    seed = schedule.seed
    played = [
        play(fleet, schedule, seed=seed * 2 + side, keep_samples=keep_samples)
        for side, fleet in enumerate(fleets)
    ]
    runs = [
        Runs(fleet.name, [p.records], p.samples, p.counters, [0.0])
        for fleet, p in zip(fleets, played, strict=True)
    ]
    windows = [schedule_window(measured(p.records, workload), p.sim_seconds) for p in played]
    judged = judge(
        runs[0],
        runs[1],
        workload,
        window_s=windows[0],
        resamples=options.resamples,
        seed=seed,
        min_effect=options.min_effect,
        # A closed loop's sides send at their own pace: each its own window.
        window_b_s=windows[1] if schedule.closed_loop else None,
    )
    if schedule.closed_loop:
        rate = len(played[0].records) / max(played[0].sim_seconds, 1e-9)
        load = rate / unit if unit else load
    else:
        rate = len(schedule.requests) / max(schedule.span_s, 1e-9)
    rise_a, rise_b = (None if schedule.closed_loop else ttft_rise(p.records) for p in played)
    point = VirtualPoint(load, rate, schedule, played[0], played[1], judged, rise_a, rise_b)
    names = {"a": f"A ({fleets[0].name})", "b": f"B ({fleets[1].name})"}
    notes = [rising_note(rise, names[side]) for side, rise in point.rising()]
    if not notes:
        return point
    return replace(point, judged=replace(judged, observations=judged.observations + notes))


def rising_note(rise: Rise, side: str) -> str:
    """'A (baseline): TTFT still rising when arrivals ended (Llama-3.1-8B-Instruct: median
    x4.9 from the second fifth of arrivals to the last): past what this fleet sustains, so
    its figures here grow with the run's length'."""
    model = rise.model.split("/")[-1]
    return (
        f"{side}: TTFT still rising when arrivals ended ({model}: median x{rise.ratio:.1f} "
        "from the second fifth of arrivals to the last): past what this fleet sustains, so "
        "its figures here grow with the run's length"
    )


def at_load(
    fleets: tuple[VirtualFleet, VirtualFleet],
    workload: Workload,
    unit: Capacity,
    load: float,
    options: CompareOptions,
    *,
    seed: int,
    keep_samples: bool = False,
) -> VirtualPoint:
    """A comparison at `load` x `unit.rate`, as many requests as a sweep's point has."""
    requests = options.virtual_requests or SWEEP_REQUESTS
    schedule = build_schedule(workload, seed=seed, rate=load * unit.rate, requests=requests)
    return compare_at(fleets, workload, schedule, load, options, keep_samples=keep_samples)


def capacities(
    fleets: tuple[VirtualFleet, VirtualFleet], workload: Workload, *, seed: int
) -> tuple[Capacity, Capacity]:
    a, b = (capacity(fleet, workload, seed=seed) for fleet in fleets)
    return a, b


def virtual_schedule(
    workload: Workload,
    options: CompareOptions,
    seed: int,
    rate: float | None,
    concurrency: int | None = None,
) -> Schedule:
    """The schedule of one virtual point at `rate` (or `concurrency` in flight, closed loop):
    --duration or --requests long, else `options.virtual_requests` requests."""
    length: dict[str, Any] = {"requests": options.virtual_requests or POINT_REQUESTS}
    if options.duration is not None:
        length = {"duration": options.duration}
    elif options.requests is not None:
        length = {"requests": options.requests}
    return build_schedule(workload, seed=seed, rate=rate, concurrency=concurrency, **length)
