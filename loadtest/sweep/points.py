"""The points of a sweep: axes of values (lists or ranges), crossed or zipped, in order.

Crossed axes vary the last one fastest, so the points that differ only in the last axis form a
line (context 8k at rates 1, 2, 4..., then context 16k at the same rates). A stop condition
ends a line, not the whole sweep. Zipped axes form one line.
"""

import itertools
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

Combine = Literal["cross", "zip"]


class SweepError(ValueError):
    """Axes that cannot be swept; the message names the axis and what is allowed."""


@dataclass(frozen=True)
class Axis:
    field: str
    values: tuple[Any, ...]


def show(value: Any) -> str:
    """A value as people read it in labels: 4 significant digits, lists as JSON."""
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict, tuple)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


@dataclass(frozen=True)
class Point:
    """Values of the swept fields, in axis order; the first `line_size` name its line."""

    values: tuple[tuple[str, Any], ...]
    line_size: int = 0

    def __getitem__(self, field: str) -> Any:
        for name, value in self.values:
            if name == field:
                return value
        raise KeyError(field)

    def get(self, field: str, default: Any = None) -> Any:
        try:
            return self[field]
        except KeyError:
            return default

    @property
    def line(self) -> tuple[tuple[str, Any], ...]:
        return self.values[: self.line_size]

    @property
    def key(self) -> str:
        """Identity of the point: the same values give the same key (resume matches on it)."""
        return json.dumps([[name, value] for name, value in self.values], sort_keys=True)

    def label(self) -> str:
        return ", ".join(f"{name}={show(value)}" for name, value in self.values) or "as given"

    def slug(self) -> str:
        """The label as a file name."""
        text = "_".join(f"{name}-{show(value)}" for name, value in self.values) or "point"
        return re.sub(r"[^A-Za-z0-9.=_+-]+", "-", text)[:80]

    def extended(self, field: str, value: Any) -> "Point":
        """This point with one more value, the line staying what this point is."""
        return Point((*self.values, (field, value)), line_size=len(self.values))


def span(
    start: float,
    stop: float,
    *,
    points: int | None = None,
    step: float | None = None,
    factor: float | None = None,
    log: bool = False,
    integer: bool = False,
) -> tuple[float, ...]:
    """Values from `start` to `stop` (both included when the steps land on it): `points`
    evenly spaced (geometrically when `log`), or every `step`, or times `factor`."""
    if sum(x is not None for x in (points, step, factor)) != 1:
        raise SweepError("a range needs exactly one of points, step or factor")
    if stop < start:
        raise SweepError(f"a range goes up: from {start:g} to {stop:g}")
    if points is not None:
        if points < 2:
            raise SweepError("points must be at least 2")
        if log:
            if start <= 0:
                raise SweepError("a log range starts above 0")
            raw = [start * (stop / start) ** (i / (points - 1)) for i in range(points)]
        else:
            raw = [start + (stop - start) * i / (points - 1) for i in range(points)]
    elif step is not None:
        if step <= 0:
            raise SweepError("step must be positive")
        count = math.floor((stop - start) / step + 1e-9) + 1
        raw = [start + i * step for i in range(count)]
    else:
        assert factor is not None
        if factor <= 1 or start <= 0:
            raise SweepError("factor must exceed 1 and the range start above 0")
        count = math.floor(math.log(stop / start) / math.log(factor) + 1e-9) + 1
        raw = [start * factor**i for i in range(count)]
    if integer:
        return tuple(dict.fromkeys(round(v) for v in raw))
    return tuple(float(f"{v:.6g}") for v in raw)


def grid(axes: Sequence[Axis], combine: Combine = "cross") -> list[Point]:
    """Every point of `axes`, in order: crossed (the last axis fastest) or zipped."""
    if not axes:
        return [Point(())]
    for axis in axes:
        if not axis.values:
            raise SweepError(f"sweep.{axis.field}: no values")
    names = [axis.field for axis in axes]
    if len(set(names)) != len(names):
        raise SweepError(f"sweep: a field appears twice among {', '.join(names)}")
    if combine == "zip":
        lengths = {axis.field: len(axis.values) for axis in axes}
        if len(set(lengths.values())) != 1:
            shown = ", ".join(f"{name} {n}" for name, n in lengths.items())
            raise SweepError(f"sweep: zipped axes must have as many values each ({shown})")
        rows = zip(*(axis.values for axis in axes), strict=True)
        return [Point(tuple(zip(names, row, strict=True)), line_size=0) for row in rows]
    product = itertools.product(*(axis.values for axis in axes))
    return [Point(tuple(zip(names, row, strict=True)), line_size=len(axes) - 1) for row in product]
