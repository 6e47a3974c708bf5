"""The sweep loop: ask the plan for the next point, measure it (or take it from what an
interrupted sweep already finished), judge it, and hand it on; until the plan has no more.

A plan decides from the outcomes so far alone, so a resumed sweep asks the same questions in
the same order and gets its finished answers back without measuring them again.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from loadtest.sweep.points import Point

R = TypeVar("R")
# Far more points than any sweep has: a plan that never ends is a bug, not a long sweep.
MAX_POINTS = 10_000


@dataclass(frozen=True)
class Outcome(Generic[R]):
    point: Point
    result: R
    # The condition this point failed (a stop condition, an unmet target), or None.
    failed: str | None = None
    # Taken from an earlier run of the same sweep rather than measured now.
    resumed: bool = False


class Plan(Protocol):
    def next(self, done: Sequence[Outcome[R]]) -> Point | None:
        """The point to measure next, decided from `done` alone; None when finished."""
        ...


Judge = Callable[[Point, R, Sequence[Outcome[R]]], str | None]


def run_sweep(
    plan: Plan,
    measure: Callable[[Point], R],
    *,
    judge: Judge[R] | None = None,
    resume: Callable[[Point], R | None] | None = None,
    after: Callable[[Outcome[R]], None] | None = None,
) -> list[Outcome[R]]:
    """Run `plan` to its end. `judge(point, result, earlier outcomes of its line)` names what
    the point failed; `resume(point)` returns a result finished earlier, if any; `after` sees
    each outcome as soon as it is known (to write it down)."""
    outcomes: list[Outcome[R]] = []
    while (point := plan.next(outcomes)) is not None:
        if len(outcomes) >= MAX_POINTS:
            raise RuntimeError(f"sweep plan did not end after {MAX_POINTS} points")
        earlier = resume(point) if resume is not None else None
        result = earlier if earlier is not None else measure(point)
        line = [o for o in outcomes if o.point.line == point.line]
        failed = judge(point, result, line) if judge is not None else None
        outcome = Outcome(point, result, failed, resumed=earlier is not None)
        outcomes.append(outcome)
        if after is not None:
            after(outcome)
    return outcomes
