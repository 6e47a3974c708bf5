"""A suite's outcomes as rows (suite.csv, suite.json) and each target's answers: saturation
points of a sweep, the highest passing value of a search."""

from collections.abc import Sequence
from typing import Any

from loadtest.environments.catalog import Environment
from loadtest.suite.model import Suite
from loadtest.suite.store import PointResult, flatten
from loadtest.sweep.engine import Outcome
from loadtest.sweep.plans import Answer
from loadtest.sweep.points import Point, show


def _cell(value: Any) -> Any:
    return value if isinstance(value, (int, float, str)) or value is None else show(value)


def rows_of(
    suite: Suite, targets: Sequence[tuple[str, Sequence[Outcome[PointResult]]]]
) -> list[dict[str, Any]]:
    """One row per measured point, in the order measured."""
    meta = {f"meta.{key}": value for key, value in flatten(suite.metadata).items()}
    rows = []
    for name, outcomes in targets:
        best = _best_probes(suite, outcomes)
        for order, outcome in enumerate(outcomes, 1):
            result = outcome.result
            row: dict[str, Any] = {"target": name, "order": order, "point": outcome.point.label()}
            row.update({field: _cell(value) for field, value in outcome.point.values})
            row["failed"] = outcome.failed or ""
            row["saturation"] = suite.search is None and outcome.failed is not None
            row["answer"] = order - 1 in best
            row["directory"] = result.directory
            row["sent"] = result.requests
            row["schedule"] = result.schedule
            row["started_at"] = result.started_at
            row["ended_at"] = result.ended_at
            row["closed_loop"] = result.closed_loop
            row["lag_ok"] = result.lag_ok
            row.update(result.figures)
            row.update({f"engine.{k}": v for k, v in result.counters.items()})
            row.update(meta)
            rows.append(row)
    return rows


def _best_probes(suite: Suite, outcomes: Sequence[Outcome[PointResult]]) -> set[int]:
    """Indices of each line's highest passing probe (a search's answers)."""
    if suite.search is None:
        return set()
    field = suite.search.field
    best: dict[Any, tuple[float, int]] = {}
    for i, outcome in enumerate(outcomes):
        if outcome.failed is None:
            value = float(outcome.point[field])
            line = outcome.point.line
            if line not in best or value > best[line][0]:
                best[line] = (value, i)
    return {i for _, i in best.values()}


def summarize_target(
    env: Environment,
    time_scale: float,
    outcomes: Sequence[Outcome[PointResult]],
    answers: Sequence[Answer],
    skipped: Sequence[Point],
    *,
    searched: bool = False,
) -> dict[str, Any]:
    saturation = [
        {
            "line": Point(o.point.line).label() if o.point.line else "",
            "point": o.point.label(),
            "values": dict(o.point.values),
            "reason": o.failed,
            "offered_rps": o.result.figures.get("offered_rps"),
            "served_rps": o.result.figures.get("served_rps"),
            "completion_rps": o.result.figures.get("completion_rps"),
            "output_tokens_per_s": o.result.figures.get("output_tokens_per_s"),
        }
        for o in outcomes
        if o.failed is not None and not searched
    ]
    return {
        "name": env.name,
        "description": env.url if env.url == env.name else env.describe(),
        "time_scale": time_scale,
        "points": len(outcomes),
        "saturation": saturation,
        "answers": [
            {
                "line": a.line.label() if a.line.values else "",
                "field": a.field,
                "best": a.best,
                "failed_at": a.failed_at,
                "probes": a.probes,
                "at_limit": a.at_limit,
                "text": a.describe(),
            }
            for a in answers
        ],
        "skipped": [p.label() for p in skipped],
    }
