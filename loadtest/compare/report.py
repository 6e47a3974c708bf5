"""report.html of a comparison: the verdict, the curves over load (virtual time), the single
virtual point or the live check with its agreement, each section labelled with its clock."""

import html
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

from loadtest.analysis.report import (
    COLORS,
    ReportSide,
    bullet_list,
    difference_rows,
    page,
    run_plots,
    svg,
)
from loadtest.analysis.stats import Difference, figures
from loadtest.analysis.summary import in_warmup, summarize
from loadtest.compare.agreement import Agreement
from loadtest.compare.live import SideRun
from loadtest.compare.session import Comparison, Live
from loadtest.compare.sweep import LABELS, Curve, curves, finite, ranges
from loadtest.compare.virtual import VirtualPoint
from loadtest.compare.waterfall import explain_section
from loadtest.drive.records import RequestRecord
from loadtest.environments.sampler import ReplicaSample
from loadtest.workload.model import Workload

METHOD = (
    "Intervals: 95%, paired bootstrap over the schedule's requests (the same requests on both "
    "sides), widened by the square root of each figure's measured autocorrelation time; with "
    "repeated runs, at least the t-interval of the per-run differences. A side is better on a "
    "figure only when the interval excludes 0 and the difference is at least 5% of A's value. "
    "Failed requests count as infinitely slow in percentiles. Rates are over the schedule's "
    "span, common to both sides."
)


def write_compare_report(result: Comparison, path: Path) -> Path:
    a, b = result.a.name, result.b.name
    verdicts = result.verdict.split(" || ")
    workload = result.workload
    body = [
        "".join(f'<p class="verdict">{html.escape(part)}</p>' for part in verdicts),
        f'<p>A = <span class="a">{html.escape(result.a.describe())}</span><br>'
        f'B = <span class="b">{html.escape(result.b.describe())}</span><br>'
        f"workload {html.escape(workload.name)}: {html.escape(workload.describe())}</p>",
    ]
    if result.capacity is not None:
        cap_a, cap_b = result.capacity
        body.append(
            bullet_list(
                [
                    f"A {a} {cap_a.describe()} (virtual time)",
                    f"B {b} {cap_b.describe()} (virtual time)",
                ]
            )
        )
    if result.explain is not None:  # why, right under the answer
        body.append(explain_section(result.explain))
    if result.sweep:
        body.append(_sweep_section(result.sweep, a, b, result.past_sustained()))
    if result.point is not None:
        body.append(_point_section(result.point, result.workload, a, b))
    if result.live is not None:
        body.append(_live_section(result.live, result.workload, a, b))
    body.append(f'<h2>How to read it</h2><p class="small">{html.escape(METHOD)}</p>')
    path.write_text(page(f"{a} vs {b}", "\n".join(body)))
    return path


def _sweep_section(
    points: Sequence[VirtualPoint], a: str, b: str, past_sustained: Sequence[str]
) -> str:
    found = curves(points)
    return (
        "<h2>Over load, in virtual time</h2>"
        f"<p class='small'>Each load: the same {len(points[0].schedule.requests)}-request "
        "seeded schedule played through both fleets' engine models with their real "
        "strategies; no CPU noise, the same answer for the same seed.</p>"
        + bullet_list([ranges(c, a, b) for c in found])
        + "".join(f"<p class='warn'>{html.escape(line)}</p>" for line in past_sustained)
        + sweep_plot(found, a, b)
        + "<p class='small'>B - A at each load, relative to A (blue: A better, orange: B "
        "better, grey: no difference beyond noise and 5%):</p>" + _sweep_table(points, found)
    )


def sweep_plot(found: Sequence[Curve], a: str, b: str) -> str:
    """Each key figure against load, A and B; filled markers where that side is better,
    dotted lines where they cross."""
    fig = Figure(figsize=(11, 7.5))
    axes = fig.subplots(2, 2)
    for ax, curve in zip(axes.flat, found, strict=True):
        scale = 1.0 if curve.figure == "goodput_rps" else 1000.0
        loads = np.asarray(curve.loads)
        sides = ((curve.a, a, COLORS[0], "a"), (curve.b, b, COLORS[1], "b"))
        for values, label, color, who in sides:
            y = finite(values) * scale
            ax.plot(loads, y, color=color, label=label, linewidth=1.5)
            better = np.array([winner == who for winner in curve.winners])
            ax.scatter(loads[better], y[better], color=color, s=40, zorder=3)
            ax.scatter(
                loads[~better], y[~better], facecolors="white", edgecolors=color, s=22, zorder=3
            )
        for x in curve.crossings():
            ax.axvline(x, color="#555", linestyle=":", linewidth=1)
        ax.set_title(LABELS[curve.figure])
        ax.set_xlabel("load (share of A's saturation rate)")
        ax.set_ylabel("req/s" if curve.figure == "goodput_rps" else "ms")
        if curve.figure != "goodput_rps":
            ax.set_yscale("log")
            # 1, 2 and 5 of each decade: a curve within one or two decades gets several labels.
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(ScalarFormatter())
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    return svg(fig)


def _sweep_table(points: Sequence[VirtualPoint], found: Sequence[Curve]) -> str:
    head = "<tr><th>load</th><th>req/s</th>" + "".join(
        f"<th>{LABELS[c.figure]}</th>" for c in found
    )
    rows = [head + "</tr>"]
    for point in points:
        cells = "".join(_relative_cell(point.judged.by_name(c.figure)) for c in found)
        rows.append(f"<tr><td>{point.load:.2f}</td><td>{point.rate:.1f}</td>{cells}</tr>")
    return "<table>" + "".join(rows) + "</table>"


def _relative_cell(d: Difference) -> str:
    rel = d.relative
    text = f"{rel:+.0%}" if rel is not None and np.isfinite(rel) else "-"
    cls = {"a": "a", "b": "b", None: "ns"}[d.winner]
    return f'<td class="{cls}">{text}</td>'


def _differences_table(diffs: Sequence[Difference]) -> str:
    units = {f.name: f.unit for f in figures()}
    return (
        "<table><tr><th>figure</th><th>A</th><th>B</th><th>B - A</th><th>95% CI</th>"
        "<th></th></tr>" + difference_rows(diffs, units) + "</table>"
    )


def _point_section(point: VirtualPoint, workload: Workload, a: str, b: str) -> str:
    sides = [
        _report_side(f"{name} (virtual)", played.records, played.samples, workload)
        for name, played in ((a, point.a), (b, point.b))
    ]
    return (
        f"<h2>At {html.escape(point.describe())} ({point.rate:.1f} req/s), in virtual time</h2>"
        + f'<p class="verdict">{html.escape(point.judged.verdict.line)}</p>'
        + bullet_list(point.judged.observations)
        + _differences_table(point.judged.differences)
        + run_plots(sides)
    )


def _live_section(live: Live, workload: Workload, a: str, b: str) -> str:
    at = f"load {live.load:.2f}" if live.load is not None else "the rate given"
    parts = [
        f"<h2>Live check at {at}</h2>",
        f"<p class='small'>{html.escape(live.schedule.describe())}; local fleets play "
        f"{live.time_scale:g} times slower than the hardware (latencies in wall time); "
        f"{live.judged.runs} run(s) a side, A B B A. Plots show each side's first run.</p>",
        f'<p class="verdict">{html.escape(live.judged.verdict.line)}</p>',
        bullet_list(live.judged.observations),
        _differences_table(live.judged.differences),
    ]
    if live.agreement is not None:
        parts.append(_agreement_table(live.agreement))
    sides = [
        _live_side(name, runs[0], workload) for name, runs in ((a, live.runs_a), (b, live.runs_b))
    ]
    parts.append(run_plots(sides))
    return "".join(parts)


def _agreement_table(found: Agreement) -> str:
    def rel(value: float | None) -> str:
        return "-" if value is None else f"{value:+.0%}"

    rows = "".join(
        f"<tr><td>{html.escape(f.figure)}</td><td>{rel(f.virtual)}</td><td>{rel(f.live)}</td>"
        f"<td>{'yes' if f.agrees else 'NO'}</td></tr>"
        for f in found.figures
    )
    return (
        f"<h3>Live and virtual time ({html.escape(found.describe())})</h3>"
        "<table><tr><th>figure</th><th>virtual B - A</th><th>live B - A</th><th>agree</th>"
        f"</tr>{rows}</table>"
    )


def _live_side(name: str, run: SideRun, workload: Workload) -> ReportSide:
    records, samples = run.labelled()
    side = _report_side(name, records, samples, workload)
    side.started_at = run.result.started_at.timestamp()
    side.description = run.env.describe()
    return side


def _report_side(
    label: str,
    records: Sequence[RequestRecord],
    samples: Sequence[ReplicaSample],
    workload: Workload,
) -> ReportSide:
    return ReportSide(
        label=label,
        records=records,
        figures=summarize(records, workload).to_dict(),
        samples=samples,
        warmup=frozenset(in_warmup(records, workload)),
    )
