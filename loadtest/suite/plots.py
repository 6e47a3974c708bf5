"""The plots of a suite report, as inline SVG: throughput against latency, figures against the
swept value, replica state and GPU telemetry over the suite's time.

A series is one line of points (a target's points that differ only in the swept value);
`suite compare` passes the series of two suites.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from loadtest.analysis.report import svg
from loadtest.environments.sampler import ReplicaSample
from loadtest.suite.gpu import FIELDS, GpuSample

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")


@dataclass
class Series:
    label: str
    rows: list[dict[str, Any]]
    color: str = PALETTE[0]
    # The field that varies along the series (None: nothing numeric does).
    x_field: str | None = None


@dataclass
class Span:
    """A point's stretch of the suite's timeline, seconds from the suite's start."""

    label: str
    start: float
    end: float


@dataclass
class Timeline:
    """What ran when, for one target: its points and what was sampled meanwhile."""

    label: str
    spans: list[Span]
    replicas: list[ReplicaSample] = field(default_factory=list)
    gpus: list[GpuSample] = field(default_factory=list)
    origin: float = 0.0


def _values(rows: Sequence[dict[str, Any]], key: str, scale: float = 1.0) -> np.ndarray:
    return np.array(
        [np.nan if r.get(key) is None else float(r[key]) * scale for r in rows], dtype=float
    )


def _mark(ax: Axes, x: np.ndarray, y: np.ndarray, rows: Sequence[dict[str, Any]]) -> None:
    for xi, yi, row in zip(x, y, rows, strict=True):
        if not (np.isfinite(xi) and np.isfinite(yi)):
            continue
        if row.get("saturation"):
            ax.scatter(
                [xi], [yi], s=160, facecolors="none", edgecolors="red", linewidths=2, zorder=5
            )
        if row.get("answer"):
            ax.scatter([xi], [yi], s=180, marker="*", color="gold", edgecolors="black", zorder=5)


def _legend(ax: Axes, **options: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**options)


def _ordered(s: Series) -> list[dict[str, Any]]:
    """A series' rows along its swept value (a search probes out of order)."""
    field = s.x_field
    if field is None:
        return s.rows
    try:
        return sorted(s.rows, key=lambda r: float(r[field]))
    except (TypeError, ValueError, KeyError):
        return s.rows


def _name(s: Series, what: str, several: bool) -> str:
    return f"{s.label} {what}" if several else what


def throughput_latency(series: Sequence[Series]) -> str:
    """Output tokens/s against TTFT and ITL, p50 dashed and p99 solid, joined in the order of
    the swept value; the saturation point ringed in red, a search's answer starred."""
    fig = Figure(figsize=(12, 4.8))
    axes = fig.subplots(1, 2)
    several = len(series) > 1
    for ax, (name, key) in zip(axes, (("TTFT", "ttft"), ("ITL", "itl")), strict=True):
        for s in series:
            rows = _ordered(s)
            x = _values(rows, "output_tokens_per_s")
            for q, style in (("p50", "--"), ("p99", "-")):
                y = _values(rows, f"{key}_{q}_s", 1000)
                label = _name(s, f"{name} {q}", several)
                ax.plot(x, y, style, marker="o", markersize=4, color=s.color, label=label)
                if q == "p99":
                    _mark(ax, x, y, rows)
        ax.set_xlabel("output tokens/s (hardware time)")
        ax.set_ylabel(f"{name} (ms)")
        if key == "ttft":
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.set_title(f"{name} p50 (dashed) and p99 against throughput")
        ax.grid(True, which="both", alpha=0.3)
        _legend(ax, fontsize="x-small")
    fig.tight_layout()
    return svg(fig)


def _numeric(series: Sequence[Series]) -> str | None:
    fields = {s.x_field for s in series}
    name = fields.pop() if len(fields) == 1 else None
    if name is None:
        return None
    for s in series:
        for row in s.rows:
            if not isinstance(row.get(name), (int, float)) or isinstance(row.get(name), bool):
                return None
    return name


PANELS = (
    ("output tokens/s", (("output_tokens_per_s", 1.0, "-", "output tokens/s"),)),
    ("TTFT (ms)", (("ttft_p50_s", 1000.0, "--", "p50"), ("ttft_p99_s", 1000.0, "-", "p99"))),
    ("ITL (ms)", (("itl_p50_s", 1000.0, "--", "p50"), ("itl_p99_s", 1000.0, "-", "p99"))),
    (
        "requests/s",
        (
            ("offered_rps", 1.0, ":", "offered"),
            ("served_rps", 1.0, "-", "served (first tokens)"),
            ("completion_rps", 1.0, "--", "done"),
        ),
    ),
)


def against_swept(series: Sequence[Series]) -> str | None:
    """Key figures against the swept value, when it is a number."""
    name = _numeric(series)
    if name is None:
        return None
    several = len(series) > 1
    fig = Figure(figsize=(12, 7))
    for ax, (title, lines) in zip(fig.subplots(2, 2).flat, PANELS, strict=True):
        for s in series:
            rows = _ordered(s)
            x = _values(rows, name)
            for key, scale, style, what in lines:
                y = _values(rows, key, scale)
                if np.isfinite(y).any():
                    label = _name(s, what, several)
                    ax.plot(x, y, style, marker="o", markersize=4, color=s.color, label=label)
                    if style == "-":
                        _mark(ax, x, y, rows)
        ax.set_xlabel(name)
        ax.set_title(title)
        if title.startswith("TTFT"):
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.grid(True, which="both", alpha=0.3)
        _legend(ax, fontsize="x-small")
    fig.tight_layout()
    return svg(fig)


def _shade(ax: Axes, spans: Sequence[Span]) -> None:
    for i, span in enumerate(spans):
        ax.axvspan(span.start, span.end, color="#000000", alpha=0.05 if i % 2 else 0.10, lw=0)
        ax.annotate(
            span.label,
            ((span.start + span.end) / 2, 1.0),
            xycoords=("data", "axes fraction"),
            ha="center",
            va="bottom",
            fontsize="x-small",
            color="#555",
        )


def replica_timeline(timelines: Sequence[Timeline]) -> str | None:
    """Waiting, running and KV usage of each replica over the suite, points shaded."""
    shown = [t for t in timelines if t.replicas]
    if not shown:
        return None
    fig = Figure(figsize=(12, 2.6 * len(shown) * 3))
    axes = fig.subplots(3 * len(shown), 1, squeeze=False)[:, 0]
    fields = (("waiting", "waiting"), ("running", "running"), ("kv_usage", "KV-cache usage"))
    for t_index, timeline in enumerate(shown):
        by_replica: dict[str, list[ReplicaSample]] = {}
        for sample in timeline.replicas:
            by_replica.setdefault(sample.replica, []).append(sample)
        for f_index, (attr, title) in enumerate(fields):
            ax = axes[t_index * 3 + f_index]
            for name, samples in sorted(by_replica.items()):
                points = [(s.at - timeline.origin, getattr(s, attr)) for s in samples]
                points = [(t, v) for t, v in points if v is not None]
                if points:
                    t, v = zip(*points, strict=True)
                    ax.plot(t, v, "-", marker=".", markersize=3, linewidth=0.8, label=name)
            _shade(ax, timeline.spans)
            ax.set_ylabel(title)
            ax.set_title(f"{timeline.label}: {title}", loc="left", fontsize="small")
            ax.grid(True, alpha=0.3)
            if attr == "kv_usage":
                ax.set_ylim(0, 1.02)
            if f_index == 0:
                _legend(ax, fontsize="xx-small", loc="upper left")
    axes[-1].set_xlabel("seconds since the suite started (wall time; shaded: one point each)")
    fig.tight_layout()
    return svg(fig)


def gpu_timeline(timelines: Sequence[Timeline]) -> str | None:
    """Power, temperature, memory used and utilisation of each GPU over the suite."""
    samples = [s for t in timelines for s in t.gpus]
    if not samples:
        return None
    origin = min(t.origin for t in timelines)
    fig = Figure(figsize=(12, 8))
    spans = [span for t in timelines for span in t.spans]
    for ax, (attr, title) in zip(fig.subplots(4, 1).flat, FIELDS.items(), strict=True):
        for gpu in sorted({s.gpu for s in samples}):
            own = [s for s in samples if s.gpu == gpu and getattr(s, attr) is not None]
            if own:
                ax.plot(
                    [s.at - origin for s in own],
                    [getattr(s, attr) for s in own],
                    label=f"GPU {gpu}",
                )
        _shade(ax, spans)
        ax.set_ylabel(title)
        ax.grid(True, alpha=0.3)
        _legend(ax, fontsize="x-small", loc="upper left")
    fig.tight_layout()
    return svg(fig)
