"""The sweep engine: points crossed or zipped, ranges, grid lines that stop at a failing point,
searches that find the highest passing value, and a resumed sweep that measures nothing twice."""

import pytest

from loadtest.sweep.engine import Outcome, run_sweep
from loadtest.sweep.plans import GridPlan, Search, SearchPlan
from loadtest.sweep.points import Axis, Point, SweepError, grid, span


def test_crossed_axes_vary_the_last_fastest_and_form_lines() -> None:
    points = grid([Axis("context", (8, 16)), Axis("rate", (1, 2, 4))])
    assert [p.label() for p in points] == [
        "context=8, rate=1",
        "context=8, rate=2",
        "context=8, rate=4",
        "context=16, rate=1",
        "context=16, rate=2",
        "context=16, rate=4",
    ]
    assert {p.line for p in points} == {(("context", 8),), (("context", 16),)}


def test_zipped_axes_pair_values_in_one_line_and_need_equal_lengths() -> None:
    points = grid([Axis("rate", (1, 2)), Axis("prompt_tokens", (100, 200))], combine="zip")
    assert [p.values for p in points] == [
        (("rate", 1), ("prompt_tokens", 100)),
        (("rate", 2), ("prompt_tokens", 200)),
    ]
    assert {p.line for p in points} == {()}
    with pytest.raises(SweepError, match=r"rate 2, prompt_tokens 3"):
        grid([Axis("rate", (1, 2)), Axis("prompt_tokens", (1, 2, 3))], combine="zip")


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"points": 4}, (1.0, 4.0, 7.0, 10.0)),
        ({"step": 3}, (1.0, 4.0, 7.0, 10.0)),
        ({"step": 4}, (1.0, 5.0, 9.0)),
        ({"factor": 2}, (1.0, 2.0, 4.0, 8.0)),
        ({"points": 3, "log": True}, (1.0, 3.16228, 10.0)),
        ({"points": 4, "integer": True}, (1, 4, 7, 10)),
    ],
)
def test_ranges(kwargs: dict[str, object], expected: tuple[float, ...]) -> None:
    assert span(1, 10, **kwargs) == expected  # type: ignore[arg-type]


def test_a_range_needs_one_way_to_step() -> None:
    with pytest.raises(SweepError, match="exactly one of points, step or factor"):
        span(1, 10, points=3, step=1)
    with pytest.raises(SweepError, match="goes up"):
        span(10, 1, points=3)


def test_a_failing_point_ends_its_line_only() -> None:
    points = grid([Axis("context", (8, 16)), Axis("rate", (1, 2, 4, 8))])
    # Saturates at rate 4 with context 8, at rate 2 with context 16.
    limit = {8: 4, 16: 2}
    measured: list[str] = []

    def measure(point: Point) -> int:
        measured.append(point.label())
        return int(point["rate"])

    def judge(point: Point, rate: int, line: object) -> str | None:
        return "too slow" if rate >= limit[point["context"]] else None

    plan = GridPlan(points)
    outcomes = run_sweep(plan, measure, judge=judge)
    assert measured == [
        "context=8, rate=1",
        "context=8, rate=2",
        "context=8, rate=4",
        "context=16, rate=1",
        "context=16, rate=2",
    ]
    assert [o.point.label() for o in outcomes if o.failed] == [
        "context=8, rate=4",
        "context=16, rate=2",
    ]
    assert [p.label() for p in plan.skipped(outcomes)] == [
        "context=8, rate=8",
        "context=16, rate=4",
        "context=16, rate=8",
    ]


def test_the_judge_sees_the_earlier_points_of_the_same_line() -> None:
    seen: dict[str, list[str]] = {}
    points = grid([Axis("a", (1, 2)), Axis("b", (1, 2))])

    def judge(point: Point, result: None, line: list[Outcome[None]]) -> None:
        seen[point.label()] = [o.point.label() for o in line]

    run_sweep(GridPlan(points), lambda _p: None, judge=judge)
    assert seen["a=2, b=2"] == ["a=2, b=1"]
    assert seen["a=1, b=2"] == ["a=1, b=1"]


def search(threshold: float, search: Search, lines: list[Point] | None = None) -> list[float]:
    """Run a search whose probes pass up to `threshold`; the values probed, in order."""
    probed: list[float] = []

    def measure(point: Point) -> float:
        probed.append(float(point[search.field]))
        return float(point[search.field])

    plan = SearchPlan(lines or [Point(())], search)
    outcomes = run_sweep(plan, measure, judge=lambda _p, v, _l: "fails" if v > threshold else None)
    answer = plan.answers(outcomes)[0]
    assert answer.best is not None and answer.best <= threshold
    return probed


def test_a_rate_search_doubles_then_bisects_to_the_precision() -> None:
    rate = Search("rate", start=2, limit=1000, precision=0.05, max_probes=20)
    probed = search(37.3, rate)
    assert probed[:6] == [2, 4, 8, 16, 32, 64]
    plan = SearchPlan([Point(())], rate)
    outcomes = [Outcome(Point((("rate", v),)), v, "x" if v > 37.3 else None) for v in probed]
    answer = plan.answers(outcomes)[0]
    assert answer.best is not None and answer.failed_at is not None
    assert 37.3 / 1.05 <= answer.best <= 37.3 < answer.failed_at
    assert answer.failed_at - answer.best <= 0.05 * answer.best
    assert "highest rate passing" in answer.describe()


def test_a_concurrency_search_finds_the_exact_integer() -> None:
    users = Search("concurrency", start=1, limit=256, integer=True, max_probes=30)
    probed = search(23, users)
    assert probed[:6] == [1, 2, 4, 8, 16, 32]
    assert 23 in probed and 24 in probed
    assert all(float(v).is_integer() for v in probed)


def test_a_search_that_fails_at_once_halves_down_to_its_floor() -> None:
    rate = Search("rate", start=8, limit=100, floor=1)
    assert search(2.5, rate)[:3] == [8, 4, 2]
    plan = SearchPlan([Point(())], rate)
    outcomes = [Outcome(Point((("rate", v),)), v, "x") for v in (8.0, 4.0, 2.0, 1.0)]
    assert plan.next(outcomes) is None
    answer = plan.answers(outcomes)[0]
    assert answer.best is None and "no rate passed" in answer.describe()


def test_a_search_that_passes_at_its_limit_says_the_answer_may_be_higher() -> None:
    rate = Search("rate", start=1, limit=10)
    probed = search(1e9, rate)
    assert probed == [1, 2, 4, 8, 10]
    plan = SearchPlan([Point(())], rate)
    answer = plan.answers([Outcome(Point((("rate", v),)), v) for v in probed])[0]
    assert answer.at_limit and "the limit may be higher" in answer.describe()


def test_a_search_runs_on_each_line_of_a_sweep() -> None:
    lines = grid([Axis("context", (8, 16))])
    users = Search("concurrency", start=1, limit=64, integer=True, max_probes=30)
    seen: list[str] = []

    def measure(point: Point) -> int:
        seen.append(point.label())
        return int(point["concurrency"])

    caps = {8: 12, 16: 5}
    plan = SearchPlan(lines, users)
    outcomes = run_sweep(
        plan,
        measure,
        judge=lambda p, v, _l: "x" if v > caps[p["context"]] else None,
    )
    assert [a.best for a in plan.answers(outcomes)] == [12, 5]
    first_16 = seen.index("context=16, concurrency=1")
    assert all(label.startswith("context=8") for label in seen[:first_16])


def test_a_resumed_sweep_takes_finished_points_and_measures_the_rest() -> None:
    rate = Search("rate", start=2, limit=1000, precision=0.05)
    judge = lambda _p, v, _l: "fails" if v > 37.3 else None  # noqa: E731
    first = run_sweep(SearchPlan([Point(())], rate), lambda p: float(p["rate"]), judge=judge)
    # Interrupted after four points: those four are on disk.
    kept = {o.point.key: o.result for o in first[:4]}
    measured: list[float] = []

    def measure(point: Point) -> float:
        measured.append(float(point["rate"]))
        return float(point["rate"])

    again = run_sweep(
        SearchPlan([Point(())], rate), measure, judge=judge, resume=lambda p: kept.get(p.key)
    )
    assert [o.point for o in again] == [o.point for o in first]
    assert [o.resumed for o in again] == [True] * 4 + [False] * (len(first) - 4)
    assert measured == [float(o.point["rate"]) for o in first[4:]]
