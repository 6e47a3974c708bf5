"""A study repeated over seeds: what each strategy's gap to the oracle is on average, at
worst, and at worst where the fleet keeps up.

One seed of a cell can mislead: on the reference fleet, mixed-lengths at 0.95, the better
of `least_work` and `prefix_least_work` ranged from -11.6% to +21.3% of the oracle's TTFT
p99 over seeds 1 to 10 (docs/routing.md). Runs where even the oracle's TTFT was still
rising at the end (`Study.rising`) measure a queue that grows with the run's length, so
their worst is given apart.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from math import sqrt
from statistics import mean, stdev
from typing import Any

from loadtest.analysis.stats import t975
from loadtest.study.fleet import ORACLE, StudyError
from loadtest.study.run import Study

# Most seeds one command runs (each is a whole study).
MAX_SEEDS = 100


def parse_seeds(text: str) -> tuple[int, ...]:
    """'1-5' -> (1, 2, 3, 4, 5); '1,3,7' -> (1, 3, 7); StudyError naming the option."""
    seeds: list[int] = []
    try:
        for part in (p.strip() for p in text.split(",") if p.strip()):
            low, dash, high = part.partition("-")
            seeds += range(int(low), int(high) + 1) if dash else [int(low)]
    except ValueError:
        raise StudyError(f"--seeds: {text!r} is not like 1-5 or 1,3,7") from None
    chosen = tuple(sorted(set(seeds)))
    if not chosen or len(chosen) > MAX_SEEDS:
        raise StudyError(f"--seeds: {text!r}: give 1 to {MAX_SEEDS} seeds, like 1-5 or 1,3,7")
    return chosen


@dataclass(frozen=True)
class Gaps:
    """One strategy's gap to the oracle (TTFT p99) at one load, seed by seed."""

    strategy: str
    load: float
    by_seed: dict[int, float | None]
    # Seeds whose oracle was still rising at this load: past what the fleet sustains.
    rising: frozenset[int]

    def _known(self, sustained_only: bool = False) -> list[float]:
        return [
            gap
            for seed, gap in self.by_seed.items()
            if gap is not None and not (sustained_only and seed in self.rising)
        ]

    @property
    def mean(self) -> float | None:
        known = self._known()
        return mean(known) if known else None

    @property
    def half_width(self) -> float | None:
        """Of the 95% t-interval of the mean gap (None below two seeds): how far the
        mean of these seeds may be from the mean over all seeds."""
        known = self._known()
        if len(known) < 2:
            return None
        return t975(len(known) - 1) * stdev(known) / sqrt(len(known))

    @property
    def worst(self) -> float | None:
        return max(self._known(), default=None)

    @property
    def worst_sustained(self) -> float | None:
        """The worst gap over the seeds whose oracle was not rising."""
        return max(self._known(sustained_only=True), default=None)


@dataclass(frozen=True)
class Best:
    """The best shipped strategy of each seed's run at one load, and its gap."""

    load: float
    by_seed: dict[int, tuple[str, float | None]]
    rising: frozenset[int]

    @property
    def worst_sustained(self) -> float | None:
        gaps = [g for s, (_, g) in self.by_seed.items() if g is not None and s not in self.rising]
        return max(gaps, default=None)


def gaps(studies: Sequence[Study]) -> list[Gaps]:
    """Every shipped strategy at every load, over `studies` (one per seed, same cells)."""
    first = studies[0]
    out = []
    for load in first.loads:
        rising = _rising(studies, load)
        for strategy in (name for name in first.strategies if name != ORACLE):
            by_seed = {}
            for study in studies:
                row = study.row(load, strategy)
                by_seed[study.seed] = None if row is None else row.gap(study.oracle(load))
            out.append(Gaps(strategy, load, by_seed, rising))
    return out


def best_on_average(found: Sequence[Gaps], load: float) -> Gaps | None:
    """The shipped strategy with the lowest mean gap at `load`."""
    known = [g for g in found if g.load == load and g.mean is not None]
    return min(known, key=lambda g: g.mean or 0.0, default=None)


def bests(studies: Sequence[Study]) -> list[Best]:
    out = []
    for load in studies[0].loads:
        by_seed: dict[int, tuple[str, float | None]] = {}
        for study in studies:
            best = study.best(load)
            if best is not None:
                by_seed[study.seed] = (best.strategy, best.gap(study.oracle(load)))
        out.append(Best(load, by_seed, _rising(studies, load)))
    return out


def _rising(studies: Sequence[Study], load: float) -> frozenset[int]:
    """The seeds whose oracle was still rising at `load`: past what the fleet sustains."""
    return frozenset(s.seed for s in studies if s.rising(load))


def document(studies: Sequence[Study]) -> dict[str, Any]:
    """seeds.json: the per-seed gaps and what holds across them."""
    found = gaps(studies)
    on_average = [best_on_average(found, load) for load in studies[0].loads]
    return {
        "seeds": [s.seed for s in studies],
        "saturation_rps": {str(s.seed): s.capacity.rate for s in studies},
        "strategies": [
            {
                "strategy": g.strategy,
                "load": g.load,
                "gap_by_seed": {str(seed): gap for seed, gap in g.by_seed.items()},
                "mean_gap": g.mean,
                "mean_gap_ci95_half_width": g.half_width,
                "worst_gap": g.worst,
                "worst_gap_sustained": g.worst_sustained,
                "oracle_rising_seeds": sorted(g.rising),
            }
            for g in found
        ],
        "best_on_average": [
            {
                "load": g.load,
                "strategy": g.strategy,
                "mean_gap": g.mean,
                "mean_gap_ci95_half_width": g.half_width,
            }
            for g in on_average
            if g is not None
        ],
        "best": [
            {
                "load": b.load,
                "by_seed": {
                    str(seed): {"strategy": name, "gap": gap}
                    for seed, (name, gap) in b.by_seed.items()
                },
                "worst_gap_sustained": b.worst_sustained,
                "oracle_rising_seeds": sorted(b.rising),
            }
            for b in bests(studies)
        ],
    }
