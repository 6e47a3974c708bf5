"""Self-contained HTML reports (plots as inline SVG) for one run or a comparison of two.

Plots: latency CDFs, TTFT over time, requests per replica, and each replica's queue,
running batch and KV-cache usage over time. A comparison overlays its two sides.
"""

import html
import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import rcParams
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from loadtest.analysis.checks import prompt_length_warnings, read_delay_line
from loadtest.analysis.stats import Difference
from loadtest.analysis.summary import Summary, in_warmup
from loadtest.drive.records import RequestRecord
from loadtest.drive.runner import RunResult
from loadtest.environments.sampler import ReplicaSample
from loadtest.workload import Workload

COLORS = ("#1f77b4", "#ff7f0e")
_CDF_POINTS = 400
NOT_RECORDED = (
    "not recorded in this run\n(virtual time keeps no per-chunk gaps;\n"
    "TPOT is their mean per request)"
)
_TIME_BIN_S = 5.0


@dataclass
class ReportSide:
    """One run as a report shows it."""

    label: str
    # The run's records (warm-up included; `warmup` holds the excluded indices).
    records: Sequence[RequestRecord]
    figures: dict[str, Any]
    samples: Sequence[ReplicaSample] = ()
    # The run's start, seconds since the epoch (samples are placed relative to it).
    started_at: float = 0.0
    warmup: frozenset[int] = field(default_factory=frozenset)
    description: str = ""

    @property
    def measured(self) -> list[RequestRecord]:
        return [r for r in self.records if r.index not in self.warmup and r.ok]


def svg(fig: Figure) -> str:
    buf = io.StringIO()
    with rcParams_context():
        fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg") :]


class rcParams_context:
    """Text as <text> (not paths) keeps the SVG small and searchable."""

    def __enter__(self) -> None:
        self.saved = rcParams["svg.fonttype"]
        rcParams["svg.fonttype"] = "none"

    def __exit__(self, *_: object) -> None:
        rcParams["svg.fonttype"] = self.saved


def _legend(ax: Axes, **options: Any) -> None:
    # A run where every request failed has nothing to label; matplotlib would warn.
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**options)


def _cdf(ax: Axes, values: Sequence[float], label: str, color: str) -> None:
    data = np.sort(np.asarray(values, dtype=float)) * 1000
    if data.size == 0:
        return
    q = np.linspace(0, 1, min(_CDF_POINTS, data.size))
    ax.plot(np.quantile(data, q), q, label=label, color=color)


def latency_cdfs(sides: Sequence[ReportSide]) -> str:
    fig = Figure(figsize=(10, 6.5))
    axes = fig.subplots(2, 2)
    metrics = [("TTFT", "ttft_s"), ("ITL", "itl_s"), ("TPOT", "tpot_s"), ("E2E", "e2e_s")]
    for ax, (title, attr) in zip(axes.flat, metrics, strict=True):
        plotted = 0
        for side, color in zip(sides, COLORS, strict=False):
            recs = side.measured
            if attr == "itl_s":
                values = [g for r in recs for g in r.itl_s]
            else:
                values = [getattr(r, attr) for r in recs if getattr(r, attr) is not None]
            _cdf(ax, values, side.label, color)
            plotted += len(values)
        ax.set_title(f"{title} CDF")
        if not plotted:
            # Virtual-time runs keep no per-chunk gaps (TPOT is their mean per request).
            ax.text(0.5, 0.5, NOT_RECORDED, ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        ax.set_xlabel("ms")
        ax.set_xscale("log")
        # 10, 100, 1000 rather than 10^1 and minor labels like 2x10^1 crowding the axis.
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylim(0, 1.01)
        ax.grid(True, alpha=0.3)
        _legend(ax, loc="lower right")
    fig.tight_layout()
    return svg(fig)


def ttft_over_time(sides: Sequence[ReportSide]) -> str:
    fig = Figure(figsize=(10, 4))
    ax = fig.subplots()
    for side, color in zip(sides, COLORS, strict=False):
        recs = [r for r in side.records if r.ok and r.ttft_s is not None]
        if not recs:
            continue
        sent = np.array([r.sent_s for r in recs])
        ttft = np.array([r.ttft_s for r in recs], dtype=float) * 1000
        ax.scatter(sent, ttft, s=4, alpha=0.35, color=color, rasterized=True)
        edges = np.arange(0, sent.max() + _TIME_BIN_S, _TIME_BIN_S)
        which = np.digitize(sent, edges)
        centers, p99 = [], []
        for b in np.unique(which):
            chunk = ttft[which == b]
            centers.append(edges[b - 1] + _TIME_BIN_S / 2)
            p99.append(np.percentile(chunk, 99))
        ax.plot(centers, p99, color=color, label=f"{side.label} p99 per {_TIME_BIN_S:g} s")
    ax.set_yscale("log")
    ax.set_xlabel("send time (s from start)")
    ax.set_ylabel("TTFT (ms)")
    ax.set_title("TTFT over time (dots: requests)")
    ax.grid(True, alpha=0.3)
    _legend(ax, loc="upper left")
    fig.tight_layout()
    return svg(fig)


def requests_per_replica(sides: Sequence[ReportSide]) -> str:
    counts = [Counter(r.replica or "-" for r in side.measured) for side in sides]
    names = sorted(set().union(*counts))
    fig = Figure(figsize=(10, 3.5))
    ax = fig.subplots()
    width = 0.8 / max(1, len(sides))
    x = np.arange(len(names))
    for i, (side, count, color) in enumerate(zip(sides, counts, COLORS, strict=False)):
        ax.bar(x + i * width, [count[n] for n in names], width, label=side.label, color=color)
    ax.set_xticks(x + width * (len(sides) - 1) / 2, names, rotation=20, ha="right")
    ax.set_ylabel("requests")
    ax.set_title("Requests per replica (measured, successful)")
    _legend(ax)
    fig.tight_layout()
    return svg(fig)


def replica_state_over_time(sides: Sequence[ReportSide]) -> str | None:
    """Waiting, running and KV usage per replica over time; one row per side."""
    with_samples = [s for s in sides if s.samples]
    if not with_samples:
        return None
    fig = Figure(figsize=(12, 3.2 * len(with_samples)))
    axes = np.atleast_2d(fig.subplots(len(with_samples), 3, squeeze=False))
    fields = [
        ("waiting", "waiting requests"),
        ("running", "running requests"),
        ("kv_usage", "KV-cache usage"),
    ]
    for row, side in zip(axes, with_samples, strict=True):
        by_replica: dict[str, list[ReplicaSample]] = {}
        for sample in side.samples:
            by_replica.setdefault(sample.replica, []).append(sample)
        for ax, (attr, title) in zip(row, fields, strict=True):
            for name, samples in sorted(by_replica.items()):
                points = [(s.at - side.started_at, getattr(s, attr)) for s in samples]
                points = [(t, v) for t, v in points if v is not None]
                if points:
                    t, v = zip(*points, strict=True)
                    ax.plot(t, v, label=name, linewidth=1)
            ax.set_title(f"{side.label}: {title}")
            ax.set_xlabel("s from start")
            ax.grid(True, alpha=0.3)
            if attr == "kv_usage":
                ax.set_ylim(0, 1.02)
        _legend(row[0], fontsize="x-small", loc="upper left")
    fig.tight_layout()
    return svg(fig)


def fmt(value: Any, unit: str) -> str:
    """A figure for people: ms for seconds, % for fractions, "inf" for failures."""
    if isinstance(value, float) and np.isinf(value):
        return "inf (failures)" if value > 0 else "-inf"
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    if unit == "s":
        return f"{value * 1000:.1f} ms"
    if unit == "":
        return f"{value:.2%}"
    return f"{value:.2f} {unit}"


def difference_rows(diffs: Sequence[Difference], units: dict[str, str]) -> str:
    rows = []
    for d in diffs:
        unit = units.get(d.figure, "")
        sign = "+" if d.diff > 0 else ""
        diff = f"{sign}{fmt(d.diff, unit)}" if not np.isnan(d.diff) else "-"
        ci = f"[{fmt(d.low, unit)}, {fmt(d.high, unit)}]" if not np.isnan(d.low) else "-"
        mark = {"a": "A better", "b": "B better", None: "no difference"}[d.winner]
        if d.imprecise:
            mark += f" (rests on {d.tail} requests beyond it)"
        cls = {"a": "a", "b": "b", None: "ns"}[d.winner]
        rows.append(
            f"<tr><td>{html.escape(d.figure)}</td><td>{fmt(d.a, unit)}</td>"
            f"<td>{fmt(d.b, unit)}</td><td>{diff}</td><td>{ci}</td>"
            f'<td class="{cls}">{mark}</td></tr>'
        )
    return "\n".join(rows)


def _summary_rows(side: ReportSide) -> str:
    rows = []
    for key, value in side.figures.items():
        # Times are *_s; rates (*_per_s) and the window are shown as they are.
        seconds = key.endswith("_s") and not key.endswith("_per_s") and key != "window_s"
        unit = "s" if seconds else "raw"
        shown = fmt(value, unit) if unit == "s" else html.escape(_plain(value))
        rows.append(f"<tr><td>{html.escape(key)}</td><td>{shown}</td></tr>")
    return "\n".join(rows)


def _plain(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}td:first-child{text-align:left}.a{color:#1f77b4}.b{color:#ff7f0e}
.ns{color:#888}.better{color:#2ca02c}.worse{color:#d62728}.explain td:nth-child(2){text-align:left}
.verdict{font-size:1.15em;padding:.6em;background:#f4f4f4;border-left:4px solid #444}
svg{max-width:100%;height:auto}.small{font-size:.9em;color:#555}
.warn{background:#fff4e5;border-left:4px solid #e8a33d;padding:6px 10px}
"""


def page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def run_plots(sides: Sequence[ReportSide]) -> str:
    parts = [
        "<h2>Latency CDFs</h2>",
        latency_cdfs(sides),
        "<h2>TTFT over time</h2>",
        ttft_over_time(sides),
        "<h2>Requests per replica</h2>",
        requests_per_replica(sides),
    ]
    state = replica_state_over_time(sides)
    parts.append("<h2>Replica queue and KV usage over time</h2>")
    parts.append(state or "<p>No replica samples (no /admin/replicas or /metrics to read).</p>")
    return "\n".join(parts)


def bullet_list(notes: Sequence[str]) -> str:
    return "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"


def render_run(side: ReportSide, *, title: str, notes: Sequence[str] = ()) -> str:
    """The HTML report of one run."""
    body = (
        bullet_list(notes)
        + "<h2>Summary</h2><table><tr><th>figure</th><th>value</th></tr>"
        + _summary_rows(side)
        + "</table>"
        + run_plots([side])
    )
    return page(title, body)


def write_run_report(
    directory: Path,
    result: RunResult,
    summary: Summary,
    workload: Workload,
    samples: Sequence[ReplicaSample] = (),
) -> Path:
    """report.html for one `loadtest run` in its results directory; returns its path.

    For `loadtest run`: sample with `ReplicaSampler` (loadtest.environments.sampler) while
    the run lasts and pass its samples here."""
    side = ReportSide(
        label=workload.name,
        records=result.records,
        figures=summary.to_dict(),
        samples=samples,
        started_at=result.started_at.timestamp(),
        warmup=frozenset(in_warmup(result.records, workload)),
    )
    lag = result.lag
    schedule = result.schedule
    models = [name for name, _ in workload.models]
    notes = [
        f"{schedule.describe()} against {result.target_url}, seed {schedule.seed}",
        f"prompts sized with {schedule.tokenizers.describe(models)}",
        f"generator lag p50 {lag.p50_s * 1000:.2f} ms, p99 {lag.p99_s * 1000:.2f} ms",
        read_delay_line(result.read_delay)[1],
        *prompt_length_warnings(result.records, tokenizer_given=schedule.tokenizers.given),
    ]
    path = directory / "report.html"
    path.write_text(render_run(side, title=f"{workload.name} on {result.target_url}", notes=notes))
    return path
