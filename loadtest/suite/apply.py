"""A sweep point applied to the suite's workload: the workload at that point and its schedule.

Fields are set in the workload's own YAML mapping and the result is validated as any workload
file is, so a point that makes no sense is refused naming the field. `rate`, `concurrency`,
`duration` and `requests` (and their classic twins) override the schedule as `loadtest run
--rate` does. `context_length` sets the prompt to that many tokens minus the longest output.

Time scale: every figure a suite is given is in hardware time. A fleet played F times slower
gets the rate divided by F and the duration, warm-up seconds and SLO targets multiplied by F.
"""

import copy
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from loadtest.sweep.points import Point, show
from loadtest.workload.format import field_paths, parse_workload
from loadtest.workload.model import LengthDist, Slo, Warmup, Workload, WorkloadError
from loadtest.workload.schedule import Schedule, build_schedule

SCHEDULE_FIELDS = ("rate", "concurrency", "duration", "requests")
# Classic testbench spellings of the schedule fields.
ALIASES = {
    "rate_per_second": "rate",
    "concurrent_requests": "concurrency",
    "num_requests": "requests",
}
CONTEXT = "context_length"
# A field and its other spellings: setting one drops the others (the point overrides them).
_TWINS = {
    "prompt_tokens": ("prompt_tokens_min", "prompt_tokens_max", "context_lengths"),
    "prompt_tokens_min": ("prompt_tokens", "context_lengths"),
    "prompt_tokens_max": ("prompt_tokens", "context_lengths"),
    "context_lengths": ("prompt_tokens", "prompt_tokens_min", "prompt_tokens_max"),
    "output_tokens": ("completion_tokens",),
    "completion_tokens": ("output_tokens",),
    "arrival": ("arrival_pattern", "rate_per_second", "concurrent_requests"),
}


def sweepable() -> list[str]:
    """Every field a sweep may name."""
    return list(dict.fromkeys([*SCHEDULE_FIELDS, *ALIASES, CONTEXT, *field_paths()]))


@dataclass(frozen=True)
class PointWorkload:
    """The workload of one point and its schedule overrides, in hardware time."""

    workload: Workload
    rate: float | None = None
    concurrency: int | None = None
    duration: float | None = None
    requests: int | None = None

    @property
    def closed_loop(self) -> bool:
        if self.concurrency is not None:
            return True
        return self.rate is None and self.workload.arrival.closed_loop

    def schedule(self, scale: float = 1.0, seed: int | None = None) -> Schedule:
        """The schedule a fleet played `scale` times slower receives (wall time)."""
        workload = self.workload
        rate, duration, requests = self.rate, self.duration, self.requests
        if scale != 1.0:
            if not self.closed_loop:
                rate = (rate if rate is not None else workload.arrival.rate or 0.0) / scale
            if duration is None and requests is None:
                requests = workload.requests
                duration = None if requests is not None else workload.duration_s
            if duration is not None:
                duration *= scale
        return build_schedule(
            workload,
            seed=seed,
            rate=rate,
            concurrency=self.concurrency,
            duration=duration,
            requests=requests,
        )

    def judged(self, scale: float = 1.0) -> Workload:
        """The workload whose warm-up and SLO targets fit a fleet `scale` times slower."""
        if scale == 1.0:
            return self.workload
        warm, slo = self.workload.warmup, self.workload.slo
        return replace(
            self.workload,
            warmup=Warmup(warm.requests, warm.seconds * scale),
            slo=Slo(
                ttft_s=None if slo.ttft_s is None else slo.ttft_s * scale,
                tpot_s=None if slo.tpot_s is None else slo.tpot_s * scale,
            ),
        )


def workload_at(
    data: Mapping[str, Any],
    point: Point,
    *,
    name: str,
    warmup: Mapping[str, Any] | None = None,
) -> PointWorkload:
    """`data` (a workload mapping) with `point`'s values set; WorkloadError naming the point
    and the field when the result is not a valid workload."""
    where = f"sweep point {point.label()}"
    mapping = copy.deepcopy(dict(data))
    if warmup is not None:
        mapping["warmup"] = dict(warmup)
    overrides: dict[str, Any] = {}
    context: int | None = None
    for field, value in point.values:
        target = ALIASES.get(field, field)
        if target in SCHEDULE_FIELDS:
            whole = target in ("concurrency", "requests")
            number = isinstance(value, int) if whole else isinstance(value, (int, float))
            if not number or isinstance(value, bool):
                kind = "an integer" if whole else "a number"
                raise WorkloadError(f"{where}: {field}: expected {kind}, got {show(value)}")
            overrides[target] = value
        elif field == CONTEXT:
            context = value
        else:
            _set(mapping, field, value, where)
    if context is not None and not any(
        k in mapping for k in ("prompt_tokens", *_TWINS["prompt_tokens"])
    ):
        _set(mapping, "prompt_tokens", 1, where)  # a stand-in until the output is known
    workload = _parse(mapping, name, where)
    if context is not None:
        room = _longest(workload.output_tokens, where)
        if not isinstance(context, int) or context - room < 1:
            raise WorkloadError(
                f"{where}: {CONTEXT} {show(context)} leaves no room for a prompt beside up to "
                f"{room} output tokens; allowed: integers above {room}"
            )
        _set(mapping, "prompt_tokens", context - room, where)
        workload = _parse(mapping, name, where)
    try:
        pw = PointWorkload(workload, **overrides)
        pw.schedule()  # refuses overrides that cannot be built (a rate of 0, ...)
    except (TypeError, WorkloadError) as exc:
        raise WorkloadError(f"{where}: {exc}") from None
    return pw


def _set(mapping: dict[str, Any], path: str, value: Any, where: str) -> None:
    head, _, tail = path.partition(".")
    for twin in _TWINS.get(head, ()):
        mapping.pop(twin, None)
    if not tail:
        mapping[head] = copy.deepcopy(value)
        return
    parent = mapping.get(head)
    if parent is None:
        parent = mapping[head] = {}
    if not isinstance(parent, dict):
        raise WorkloadError(
            f"{where}: {path}: the workload's {head} is {parent!r}, not a mapping; sweep "
            f"{head} itself, or write it as a mapping in the workload"
        )
    parent[tail] = copy.deepcopy(value)


def _parse(mapping: dict[str, Any], name: str, where: str) -> Workload:
    return parse_workload(mapping, default_name=name, source=f"at {where}")


def _longest(dist: LengthDist, where: str) -> int:
    if dist.kind == "fixed":
        return dist.value
    if dist.kind == "empirical":
        return max(dist.values)
    if dist.high is None:
        raise WorkloadError(
            f"{where}: {CONTEXT} needs the longest output: give output_tokens a max"
        )
    return dist.high
