"""Why B differs from A: the chain's links on one schedule, and each step's contribution.

Every link of the chain (loadtest.compare.chain) plays the identical schedule in virtual
time: its ends are the comparison's own plays of A and B, the links between them are played
with their own strategy seeds. A step is the comparison of two adjacent links, with the
paired machinery of any comparison (loadtest.analysis.stats): its contribution to a figure is
the difference between them, with its 95% interval. The contributions add up to B - A of the
comparison, the same figure the verdict quotes; `consistent` checks that they do, within the
comparison's interval.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from loadtest.analysis.stats import Difference
from loadtest.compare.chain import CannotAttribute, Link, derive_chain
from loadtest.compare.judge import Runs, judge, measured, schedule_window
from loadtest.compare.options import EXPLAIN_LOAD, CompareOptions
from loadtest.compare.sweep import LABELS
from loadtest.compare.virtual import VirtualPoint, capacities, compare_at, virtual_schedule
from loadtest.environments.catalog import Environment
from loadtest.playback.capacity import Capacity
from loadtest.playback.play import Played, play
from loadtest.workload.model import Workload
from loadtest.workload.schedule import Schedule

# The figures a step is judged on: the slowest users' wait, the typical stream speed, and
# what meets the SLO.
EXPLAINED = ("ttft_p99_s", "tpot_p50_s", "goodput_rps")


@dataclass(frozen=True)
class Step:
    """One change of the chain and its contribution to each explained figure."""

    change: str
    knob: str
    before: str
    after: str
    differences: dict[str, Difference]


@dataclass(frozen=True)
class Attribution:
    """The chain at one load: each link's figures, each step's contribution, the total."""

    load: float
    rate: float
    requests: int
    links: list[Link]
    # Each link's value of each explained figure.
    values: list[dict[str, float]]
    steps: list[Step]
    # The comparison of A and B on this schedule (played apart from the chain).
    total: dict[str, Difference]
    preemptions: list[float]

    def sum_of_steps(self, figure: str) -> float:
        return float(sum(step.differences[figure].diff for step in self.steps))

    def consistent(self, figure: str) -> bool:
        """The steps add up to A -> B: within its interval, or nearer to its difference than
        the minimum effect (an interval of width 0, every request meeting the SLO on both
        sides, would otherwise call a hundredth of a request per second inconsistent)."""
        total, summed = self.total[figure], self.sum_of_steps(figure)
        if not np.isfinite(summed) or not np.isfinite(total.diff):
            return bool(summed == total.diff)
        near = abs(summed - total.diff) < total.min_effect * abs(total.a)
        return bool(total.low <= summed <= total.high or near)


def consistency(found: Attribution) -> str:
    """Whether the steps add up to the comparison's B - A, in words."""
    off = [LABELS[f] for f in EXPLAINED if not found.consistent(f)]
    if not off:
        return "the steps add up to B - A of the comparison (A and B are its own runs)"
    return f"the steps do not add up to B - A of the comparison on {', '.join(off)}"


def interval(d: Difference) -> str:
    """A step's contribution and its interval: "+124 [+53, +175]"."""
    low, high = number(d.low, d.figure, signed=True), number(d.high, d.figure, signed=True)
    return f"{number(d.diff, d.figure, signed=True)} [{low}, {high}]"


UNITS = {"ttft_p99_s": "ms", "tpot_p50_s": "ms", "goodput_rps": "req/s"}


def number(value: float, figure: str, *, signed: bool = False) -> str:
    """An explained figure in its unit (UNITS) for a table cell: whole ms from 100 ms."""
    if not np.isfinite(value):
        return "-" if np.isnan(value) else ("+inf" if value > 0 and signed else "inf")
    sign = "+" if signed else ""
    if figure == "goodput_rps":
        return f"{value:{sign}.2f}"
    ms = value * 1000
    return f"{ms:{sign},.0f}" if abs(ms) >= 100 else f"{ms:{sign}.1f}"


def link_seed(schedule: Schedule, index: int) -> int:
    """The strategy seed of the link `index` between the ends: apart from the sides'."""
    return schedule.seed * 2 + 1 + index


def explain(
    links: list[Link], workload: Workload, point: VirtualPoint, options: CompareOptions
) -> Attribution:
    """Play `point`'s schedule through the links between A and B and judge every step;
    A and B are `point`'s own plays, and its comparison is the total."""
    schedule = point.schedule
    between = [
        play(link.fleet, schedule, seed=link_seed(schedule, k))
        for k, link in enumerate(links[1:-1], start=1)
    ]
    played = [point.a, *between, point.b]
    window = schedule_window(measured(played[0].records, workload), played[0].sim_seconds)
    steps = []
    for k in range(1, len(links)):
        judged = judge(
            _runs(links[k - 1], played[k - 1]),
            _runs(links[k], played[k]),
            workload,
            window_s=window,
            resamples=options.resamples,
            seed=schedule.seed,  # the comparison's resamples: a one-step chain is the comparison
            min_effect=options.min_effect,
            only=EXPLAINED,
        )
        steps.append(
            Step(
                str(links[k].change),
                str(links[k].knob),
                links[k - 1].name,
                links[k].name,
                {figure: judged.by_name(figure) for figure in EXPLAINED},
            )
        )
    values = [{figure: step.differences[figure].a for figure in EXPLAINED} for step in steps]
    values.append({figure: steps[-1].differences[figure].b for figure in EXPLAINED})
    return Attribution(
        load=point.load,
        rate=point.rate,
        requests=len(schedule.requests),
        links=links,
        values=values,
        steps=steps,
        total={figure: point.judged.by_name(figure) for figure in EXPLAINED},
        preemptions=[p.counters.get("preemptions", 0.0) for p in played],
    )


def _runs(link: Link, played: Played) -> Runs:
    return Runs(link.name, [played.records], played.samples, played.counters, [0.0])


def attribute(
    a: Environment,
    b: Environment,
    known: Mapping[str, Environment],
    workload: Workload,
    options: CompareOptions,
    *,
    seed: int,
    capacity: tuple[Capacity, Capacity] | None,
    point: VirtualPoint | None,
    say: Callable[[str], None],
) -> Attribution | str:
    """`loadtest compare A B --explain`: the attribution at --load (or EXPLAIN_LOAD, or the
    share of A's saturation rate --rate is), reusing the single virtual point's schedule and
    comparison when there is one; or the reason there is none."""
    try:
        links = derive_chain(a, b, known)
    except CannotAttribute as exc:
        say(f"explain: {exc}")
        return str(exc)
    fleets = (links[0].fleet, links[-1].fleet)
    unit = (capacity or capacities(fleets, workload, seed=seed))[0].rate
    load = options.load if options.load is not None else EXPLAIN_LOAD
    if options.load is None and options.rate is not None:
        load = options.rate / unit
    if point is None or point.load != load:
        schedule = virtual_schedule(workload, options, seed, load * unit)
        point = compare_at(fleets, workload, schedule, load, options)
    say(
        f"virtual time: explaining at load {load:.2f}, one change at a time: "
        + " -> ".join(link.name for link in links)
    )
    return explain(links, workload, point, options)


def as_document(found: Attribution | str) -> dict[str, Any]:
    """compare.json's `explain`: the links, each step with its intervals, the total."""
    if isinstance(found, str):
        return {"refused": found}
    return {
        "load": found.load,
        "rate": found.rate,
        "requests": found.requests,
        "links": [
            {"name": link.name, "change": link.change, "values": values, "preemptions": pre}
            for link, values, pre in zip(found.links, found.values, found.preemptions, strict=True)
        ],
        "steps": [
            {
                "change": step.change,
                "from": step.before,
                "to": step.after,
                "differences": [d.to_dict() for d in step.differences.values()],
            }
            for step in found.steps
        ],
        "total": [d.to_dict() for d in found.total.values()],
        "sum_of_steps": {figure: _finite(found.sum_of_steps(figure)) for figure in EXPLAINED},
        "consistent": {figure: found.consistent(figure) for figure in EXPLAINED},
    }


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
