"""A benchmark suite as the rest of the code sees it (frozen); `loadtest.suite.spec` builds it
from YAML."""

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest.suite.apply import PointWorkload, workload_at
from loadtest.suite.conditions import Conditions
from loadtest.sweep.plans import GridPlan, Search, SearchPlan
from loadtest.sweep.points import Axis, Combine, Point, grid


class SuiteError(ValueError):
    """A suite that cannot be run; the message names the field and what is allowed."""


@dataclass(frozen=True)
class Telemetry:
    gpu: bool = True
    replicas: bool = True
    interval_s: float = 0.5


@dataclass(frozen=True)
class Suite:
    name: str
    source: str
    targets: tuple[str, ...]
    # The workload's YAML mapping, before any point changes it.
    workload: dict[str, Any] = field(hash=False)
    workload_name: str
    description: str = ""
    axes: tuple[Axis, ...] = ()
    combine: Combine = "cross"
    search: Search | None = None
    # What every probe of a search must meet (search) / what ends a line (sweep).
    meets: Conditions | None = None
    stop_when: Conditions | None = None
    # Overrides the workload's warm-up: {requests: N, seconds: S} (hardware seconds).
    warmup: dict[str, Any] | None = field(default=None, hash=False)
    cooldown_s: float = 0.0
    time_scale: float | None = None
    environments_file: Path | None = None
    telemetry: Telemetry = Telemetry()
    # Recorded as given and reported (server properties this tool cannot set, and the like).
    metadata: dict[str, Any] = field(default_factory=dict, hash=False)
    # What was read but not applied, said once in the output and the report.
    notes: tuple[str, ...] = ()
    seed: int | None = None

    def points(self) -> list[Point]:
        """The sweep's points; a search probes on each of them."""
        return grid(self.axes, self.combine)

    def plan(self) -> GridPlan | SearchPlan:
        if self.search is not None:
            return SearchPlan(self.points(), self.search)
        return GridPlan(self.points())

    @property
    def conditions(self) -> Conditions | None:
        return self.meets if self.search is not None else self.stop_when

    def workload_at(self, point: Point) -> PointWorkload:
        return workload_at(self.workload, point, name=self.workload_name, warmup=self.warmup)

    def describe_workload(self) -> str:
        """The workload's name and what it sends, as the sweep leaves it where not swept."""
        first = self.points()[0]
        if self.search is not None:
            first = first.extended(
                self.search.field,
                int(self.search.start) if self.search.integer else self.search.start,
            )
        text = f"{self.workload_name}: {self.workload_at(first).workload.describe()}"
        return f"{text} (as at the first point, {first.label()})" if first.values else text

    def definition(self) -> dict[str, Any]:
        """What decides the measurements (JSON-ready): a resumed suite must match it."""
        return {
            "name": self.name,
            "targets": list(self.targets),
            "workload": self.workload,
            "axes": [[axis.field, list(axis.values)] for axis in self.axes],
            "combine": self.combine,
            "search": None if self.search is None else self.search.__dict__,
            "meets": None if self.meets is None else self.meets.given(),
            "stop_when": None if self.stop_when is None else self.stop_when.given(),
            "warmup": self.warmup,
            "cooldown_s": self.cooldown_s,
            "time_scale": self.time_scale,
            "seed": self.seed,
        }

    def fingerprint(self) -> str:
        text = json.dumps(self.definition(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]
