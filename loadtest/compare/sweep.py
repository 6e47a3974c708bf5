"""A sweep of virtual comparisons over load: each key figure's curves for A and B, where each
side is better, and where they cross. This is the answer to "when does B pay off"."""

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from loadtest.compare.virtual import VirtualPoint

# The figures a sweep draws and judges over load.
KEY_FIGURES = ("ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "goodput_rps")
LABELS = {
    "ttft_p50_s": "TTFT p50",
    "ttft_p99_s": "TTFT p99",
    "tpot_p50_s": "TPOT p50",
    "goodput_rps": "goodput",
}


@dataclass(frozen=True)
class Curve:
    """One figure over the sweep's loads."""

    figure: str
    loads: tuple[float, ...]
    a: tuple[float, ...]
    b: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    # "a", "b" or None (no difference beyond noise and the minimum effect) at each load.
    winners: tuple[str | None, ...]

    def crossings(self) -> list[float]:
        """Loads where the better side changes from one to the other (between two points,
        at the linear interpolation of the difference's zero)."""
        out = []
        rows = zip(self.loads, self.winners, self.a, self.b, strict=True)
        decided = [(load, winner, b - a) for load, winner, a, b in rows if winner]
        for (l1, w1, d1), (l2, w2, d2) in itertools.pairwise(decided):
            if w1 != w2:
                exact = np.isfinite(d1) and np.isfinite(d2) and d1 != d2
                out.append(l1 + (l2 - l1) * d1 / (d1 - d2) if exact else (l1 + l2) / 2)
        return out


def curves(points: Sequence[VirtualPoint]) -> list[Curve]:
    out = []
    for figure in KEY_FIGURES:
        diffs = [p.judged.by_name(figure) for p in points]
        out.append(
            Curve(
                figure,
                tuple(p.load for p in points),
                tuple(d.a for d in diffs),
                tuple(d.b for d in diffs),
                tuple(d.low for d in diffs),
                tuple(d.high for d in diffs),
                tuple(d.winner for d in diffs),
            )
        )
    return out


def ranges(curve: Curve, a: str, b: str) -> str:
    """'TTFT p99: baseline better at 0.30-0.57, no difference at 0.67, managed better at
    0.76-0.95 (they cross near 0.66)'."""
    names = {"a": f"{a} better", "b": f"{b} better", None: "no difference"}
    spans: list[tuple[str, float, float]] = []
    for load, winner in zip(curve.loads, curve.winners, strict=True):
        label = names[winner]
        if spans and spans[-1][0] == label:
            spans[-1] = (label, spans[-1][1], load)
        else:
            spans.append((label, load, load))
    parts = [
        f"{label} at {low:.2f}" if low == high else f"{label} at {low:.2f}-{high:.2f}"
        for label, low, high in spans
    ]
    cross = curve.crossings()
    tail = f" (they cross near {', '.join(f'{x:.2f}' for x in cross)})" if cross else ""
    return f"{LABELS[curve.figure]}: {', '.join(parts)}{tail}"


def sweep_verdict(found: Sequence[Curve], a: str, b: str) -> str:
    """Where each side is better on TTFT p99 and goodput over the loads swept."""
    by_figure = {c.figure: c for c in found}
    lines = [ranges(by_figure[f], a, b) for f in ("ttft_p99_s", "goodput_rps")]
    return "; ".join(lines)


def past_sustained(
    points: Sequence[VirtualPoint], a: str, b: str, rates: tuple[float, float] | None = None
) -> list[str]:
    """A line per side whose TTFT was still rising when arrivals ended at some loads:
    'managed: TTFT still rising at loads 0.76, 0.86, 0.95 (past what it sustains: it
    saturates at 0.74 of baseline's rate; figures there grow with the run's length)'.
    `rates`: both sides' saturation rates, A's the unit of the loads."""
    lines = []
    for side, name in (("a", a), ("b", b)):
        loads = [p.load for p in points if any(who == side for who, _ in p.rising())]
        if not loads:
            continue
        where = ", ".join(f"{load:.2f}" for load in loads)
        own = ""
        if side == "b" and rates is not None and rates[0] > 0:
            own = f"it saturates at {rates[1] / rates[0]:.2f} of {a}'s rate; "
        lines.append(
            f"{name}: TTFT still rising at load{'s' if len(loads) > 1 else ''} {where} "
            f"(past what it sustains: {own}figures there grow with the run's length)"
        )
    return lines


def finite(values: Sequence[float]) -> np.ndarray:
    """Values for plotting: infinities (failures) as NaN gaps."""
    array = np.asarray(values, dtype=float)
    return np.where(np.isfinite(array), array, np.nan)
