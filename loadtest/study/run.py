"""Play each strategy and the oracle at each load, on one seeded schedule per load.

Loads are fractions of the fleet's saturation rate for the workload (found first by flooding
it: loadtest.playback.capacity). Every strategy at a load plays the very same arrivals, so
their figures differ by routing alone.
"""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from loadtest.analysis.rise import Rise, ttft_rise
from loadtest.analysis.summary import summarize
from loadtest.playback.arrivals import virtual_requests
from loadtest.playback.capacity import Capacity, capacity
from loadtest.playback.fleets import VirtualFleet
from loadtest.playback.play import counters, request_record
from loadtest.sim.virtual import run_virtual
from loadtest.study.fleet import ORACLE, StudyFleet, new_strategy
from loadtest.workload.model import Workload
from loadtest.workload.schedule import build_schedule

# The figures each row carries (seconds, requests per second, shares).
FIGURES = (
    "ttft_p50_s",
    "ttft_p99_s",
    "tpot_p50_s",
    "tpot_p99_s",
    "goodput_rps",
    "goodput_fraction",
    "error_rate",
)
# Copies of one profile are flooded two at a time (as the reference fleet's pairs are): N
# independent replicas under round_robin finish N/2 times what two do, and a flood large
# enough to fill 100 replicas' batches several times over would cost more than the study.
MEASURED_COPIES = 2


@dataclass(frozen=True)
class Row:
    """One strategy at one load."""

    load: float
    rate: float
    strategy: str
    figures: dict[str, float | None]
    prefix_hit_rate: float | None
    cpu_s: float
    requests: int
    # Median TTFT of the second and the last fifth of arrivals (loadtest.analysis.rise).
    ttft_rise: Rise | None = None

    def gap(self, oracle: "Row | None", figure: str = "ttft_p99_s") -> float | None:
        """This row's `figure` over the oracle's, minus 1 (+0.10: 10% worse than it)."""
        if oracle is None:
            return None
        mine, best = self.figures.get(figure), oracle.figures.get(figure)
        if mine is None or best is None or best <= 0:
            return None
        return mine / best - 1.0


@dataclass(frozen=True)
class Study:
    fleet: StudyFleet
    workload: Workload
    capacity: Capacity
    loads: tuple[float, ...]
    strategies: tuple[str, ...]
    seed: int
    requests: int
    poll_interval: float
    rows: tuple[Row, ...]

    def row(self, load: float, strategy: str) -> Row | None:
        for row in self.rows:
            if row.load == load and row.strategy == strategy:
                return row
        return None

    def oracle(self, load: float) -> Row | None:
        return self.row(load, ORACLE)

    def rising(self, load: float) -> bool:
        """Whether even the oracle's TTFT was still rising at the end of the runs at `load`:
        the fleet does not keep up there, and the figures grow with the request count."""
        oracle = self.oracle(load)
        return oracle is not None and oracle.ttft_rise is not None and oracle.ttft_rise.rising

    def best(self, load: float) -> Row | None:
        """The shipped strategy with the lowest TTFT p99 at `load`."""
        rows = [r for r in self.rows if r.load == load and r.strategy != ORACLE]
        rows = [r for r in rows if r.figures["ttft_p99_s"] is not None]
        return min(rows, key=lambda r: r.figures["ttft_p99_s"] or 0.0, default=None)


def saturation(fleet: StudyFleet, workload: Workload, *, seed: int, poll: float) -> Capacity:
    """The fleet's saturation rate for `workload`, flooded under round_robin (copies of one
    profile: two of them, scaled to the fleet)."""
    replicas = fleet.replicas
    copies = fleet.copies()
    if copies > MEASURED_COPIES:
        replicas = replicas[:MEASURED_COPIES]
    virtual = VirtualFleet(fleet.name, replicas, "round_robin", poll)
    found = capacity(virtual, workload, seed=seed)
    if copies <= MEASURED_COPIES:
        return found
    scale = copies / MEASURED_COPIES
    per_model = {model: rate * scale for model, rate in found.per_model.items()}
    return Capacity(found.rate * scale, per_model, found.bottleneck)


def run_study(
    fleet: StudyFleet,
    workload: Workload,
    strategies: Sequence[str],
    loads: Sequence[float],
    *,
    seed: int,
    requests: int,
    poll_interval: float = 1.0,
    announce: Callable[[str], None] = lambda _: None,
) -> Study:
    """Every strategy (and the oracle, first) at every load; `announce` hears progress."""
    workload = fleet.fit(workload)
    found = saturation(fleet, workload, seed=seed, poll=poll_interval)
    scaled = fleet.copies() > MEASURED_COPIES
    note = f" (measured on {MEASURED_COPIES} copies, x {fleet.copies() / 2:g})" if scaled else ""
    announce(f"{fleet.name}, {workload.name}: {found.describe()}{note}")
    names = (ORACLE, *[s for s in strategies if s != ORACLE])
    rows = []
    for load in loads:
        rate = load * found.rate
        schedule = build_schedule(workload, seed=seed, rate=rate, requests=requests)
        for name in names:
            started = time.process_time()
            result = run_virtual(
                fleet.replicas,
                new_strategy(name, seed=seed),
                virtual_requests(schedule),
                poll_interval=poll_interval,
            )
            cpu = time.process_time() - started
            records = [request_record(record) for record in result.records]
            summary = summarize(records, workload).to_dict()
            row = Row(
                load,
                rate,
                name,
                {f: _float(summary.get(f)) for f in FIGURES},
                counters(result.engines).get("prefix_cache_hit_rate"),
                cpu,
                len(records),
                ttft_rise(records),
            )
            rows.append(row)
            announce(_progress(row, _oracle_at(rows, load) if name != ORACLE else None))
    return Study(
        fleet,
        workload,
        found,
        tuple(loads),
        names,
        seed,
        requests,
        poll_interval,
        tuple(rows),
    )


def _oracle_at(rows: Sequence[Row], load: float) -> Row | None:
    return next((r for r in rows if r.load == load and r.strategy == ORACLE), None)


def _progress(row: Row, oracle: Row | None) -> str:
    p99 = row.figures["ttft_p99_s"]
    gap = row.gap(oracle)
    text = f"  load {row.load:.2f} {row.strategy}: TTFT p99 "
    text += f"{p99 * 1e3:.0f} ms" if p99 is not None else "-"
    if gap is not None:
        text += f" ({gap:+.0%} vs oracle)"
    rise = row.ttft_rise
    if rise is not None and rise.rising:
        model = rise.model.split("/")[-1]
        text += f", still rising ({model}: median x{rise.ratio:.1f}, second fifth to last)"
    return text + f" ({row.requests} requests, {row.cpu_s:.1f} s CPU)"


def _float(value: float | int | None) -> float | None:
    return None if value is None else float(value)
