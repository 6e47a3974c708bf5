"""Which point comes next.

- GridPlan: the points in order; a failing point (a stop condition) marks its line's
  saturation point, and the rest of that line is skipped.
- SearchPlan: per line, the highest value of one field that passes: double from `start` until
  a value fails, then bisect between the highest pass and the lowest fail until they are
  `precision` apart (relative; integers: adjacent). Assumes passing is monotone (more load
  never passes where less failed); a noisy fail below a pass is ignored.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loadtest.sweep.engine import Outcome
from loadtest.sweep.points import Point


class GridPlan:
    def __init__(self, points: Sequence[Point]) -> None:
        self.points = list(points)

    def next(self, done: Sequence[Outcome[Any]]) -> Point | None:
        measured = {o.point.key for o in done}
        stopped = {o.point.line for o in done if o.failed is not None}
        for point in self.points:
            if point.key not in measured and point.line not in stopped:
                return point
        return None

    def skipped(self, done: Sequence[Outcome[Any]]) -> list[Point]:
        """Points not measured because their line stopped."""
        measured = {o.point.key for o in done}
        stopped = {o.point.line for o in done if o.failed is not None}
        return [p for p in self.points if p.key not in measured and p.line in stopped]


@dataclass(frozen=True)
class Search:
    field: str
    start: float
    # The largest value tried; a pass there ends the search ("at least this").
    limit: float
    integer: bool = False
    # Bisection ends when high - low <= precision x low (integers: when adjacent).
    precision: float = 0.05
    max_probes: int = 12
    # Below this nothing is tried: the answer is then "none passed".
    floor: float | None = None

    def _round(self, value: float) -> float:
        return float(int(value)) if self.integer else float(f"{value:.4g}")

    def next_value(self, probes: Sequence[tuple[float, bool]]) -> float | None:
        """The next value to try after `probes` (value, passed), or None when done."""
        if not probes:
            return self._round(min(self.start, self.limit))
        if len(probes) >= self.max_probes:
            return None
        low, high = bracket(probes)
        tried = {value for value, _ in probes}
        if low is None:
            assert high is not None
            value = self._round(high / 2)
            floor = self.floor if self.floor is not None else (1.0 if self.integer else 0.0)
            return value if value >= floor and value > 0 and value not in tried else None
        if high is None:
            if low >= self.limit:
                return None
            return self._round(min(low * 2, self.limit))
        if self.integer and high - low <= 1:
            return None
        if not self.integer and high - low <= self.precision * low:
            return None
        value = self._round((low + high) / 2)
        return value if value not in tried and low < value < high else None


def bracket(probes: Sequence[tuple[float, bool]]) -> tuple[float | None, float | None]:
    """(highest passing value, lowest failing value above it)."""
    passed = [value for value, ok in probes if ok]
    low = max(passed) if passed else None
    fails = [value for value, ok in probes if not ok and (low is None or value > low)]
    return low, (min(fails) if fails else None)


@dataclass(frozen=True)
class Answer:
    """A search's result on one line."""

    line: Point
    field: str
    # The highest value that passed (None: none did), and the lowest that failed above it.
    best: float | None
    failed_at: float | None
    probes: int
    # The best value is the largest tried: the true answer may lie higher.
    at_limit: bool

    def describe(self) -> str:
        where = f" at {self.line.label()}" if self.line.values else ""
        if self.best is None:
            low = f"{self.failed_at:g}" if self.failed_at is not None else "-"
            return f"no {self.field} passed{where} (lowest tried {low})"
        best = f"{self.best:g}"
        if self.at_limit:
            return f"{self.field} {best} passed{where}: the largest tried, the limit may be higher"
        above = f" ({self.failed_at:g} failed)" if self.failed_at is not None else ""
        return f"highest {self.field} passing{where}: {best}{above}, {self.probes} probes"


class SearchPlan:
    """`search` on each of `lines` in turn (a sweep's points, or one empty point)."""

    def __init__(self, lines: Sequence[Point], search: Search) -> None:
        self.lines = list(lines)
        self.search = search

    def _probes(self, line: Point, done: Sequence[Outcome[Any]]) -> list[tuple[float, bool]]:
        field = self.search.field
        return [
            (float(o.point[field]), o.failed is None) for o in done if o.point.line == line.values
        ]

    def next(self, done: Sequence[Outcome[Any]]) -> Point | None:
        for line in self.lines:
            value = self.search.next_value(self._probes(line, done))
            if value is not None:
                shown: Any = int(value) if self.search.integer else value
                return line.extended(self.search.field, shown)
        return None

    def answers(self, done: Sequence[Outcome[Any]]) -> list[Answer]:
        out = []
        for line in self.lines:
            probes = self._probes(line, done)
            low, high = bracket(probes)
            at_limit = low is not None and low >= self.search._round(self.search.limit)
            out.append(Answer(line, self.search.field, low, high, len(probes), at_limit))
        return out
