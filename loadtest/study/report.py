"""A study's files: study.json (everything), study.csv (a row per strategy and load) and
report.html (the tables and each figure's curve against load, the oracle dashed)."""

import csv
import html
from pathlib import Path
from typing import Any

import orjson
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter, ScalarFormatter

from loadtest.analysis.report import page, svg
from loadtest.study.fleet import ORACLE
from loadtest.study.run import FIGURES, Study

# Said of a load where even the oracle's TTFT was still rising as the run ended.
RISING_NOTE = (
    "TTFT was still rising at the end of the run, even under the oracle: the fleet does not "
    "keep up at this load, so its figures grow with --requests and move from seed to seed; "
    "compare strategies at a load it sustains"
)

PLOTTED = (
    ("ttft_p50_s", "TTFT p50 (ms)", 1e3),
    ("ttft_p99_s", "TTFT p99 (ms)", 1e3),
    ("tpot_p99_s", "TPOT p99 (ms)", 1e3),
    ("goodput_rps", "goodput (req/s)", 1.0),
)


def document(study: Study) -> dict[str, Any]:
    return {
        "fleet": study.fleet.name,
        "replicas": len(study.fleet.replicas),
        "workload": study.workload.name,
        "workload_description": study.workload.describe(),
        "saturation_rps": study.capacity.rate,
        "saturation": study.capacity.describe(),
        "loads": list(study.loads),
        "strategies": list(study.strategies),
        "seed": study.seed,
        "requests_per_run": study.requests,
        "poll_interval_s": study.poll_interval,
        "rows": [
            {
                "load": row.load,
                "rate_rps": row.rate,
                "strategy": row.strategy,
                **row.figures,
                "prefix_hit_rate": row.prefix_hit_rate,
                "ttft_p99_gap_to_oracle": row.gap(study.oracle(row.load)),
                "ttft_rise": None if row.ttft_rise is None else row.ttft_rise.ratio,
                "ttft_rising": row.ttft_rise is not None and row.ttft_rise.rising,
                "ttft_rise_model": None if row.ttft_rise is None else row.ttft_rise.model,
                "cpu_s": row.cpu_s,
                "requests": row.requests,
            }
            for row in study.rows
        ],
    }


def write_study(study: Study, directory: Path) -> Path:
    """study.json, study.csv and report.html in `directory`; returns the report's path."""
    directory.mkdir(parents=True, exist_ok=True)
    doc = document(study)
    (directory / "study.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    with (directory / "study.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(doc["rows"][0]))
        writer.writeheader()
        writer.writerows(doc["rows"])
    path = directory / "report.html"
    path.write_text(_html(study))
    return path


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1e3:,.0f}"


def _table(study: Study, load: float) -> str:
    oracle = study.oracle(load)
    head = (
        "<tr><th>strategy</th><th>TTFT p50 ms</th><th>TTFT p99 ms</th><th>vs oracle</th>"
        "<th>TPOT p50 ms</th><th>TPOT p99 ms</th><th>goodput req/s</th><th>prefix hits</th></tr>"
    )
    rows = []
    best = study.best(load)
    for row in (r for r in study.rows if r.load == load):
        f = row.figures
        gap = row.gap(oracle)
        hits = row.prefix_hit_rate
        mark = ' class="best"' if best is row else ""
        rows.append(
            f"<tr{mark}><td>{html.escape(row.strategy)}</td><td>{_ms(f['ttft_p50_s'])}</td>"
            f"<td>{_ms(f['ttft_p99_s'])}</td>"
            f"<td>{'' if gap is None else f'{gap:+.1%}'}</td>"
            f"<td>{_ms(f['tpot_p50_s'])}</td><td>{_ms(f['tpot_p99_s'])}</td>"
            f"<td>{f['goodput_rps'] or 0.0:.2f}</td>"
            f"<td>{'-' if hits is None else f'{hits:.0%}'}</td></tr>"
        )
    rate = study.rows[0].rate if study.rows else 0.0
    rate = next((r.rate for r in study.rows if r.load == load), rate)
    note = f'<p class="warn">{html.escape(RISING_NOTE)}.</p>' if study.rising(load) else ""
    title = f"<h2>Load {load:.2f} ({rate:.1f} req/s)</h2>{note}"
    return f"{title}<table>{head}{''.join(rows)}</table>"


def _curves(study: Study) -> str:
    if len(study.loads) < 2:
        return "<p>One load: no curves (give --loads with two or more).</p>"
    fig = Figure(figsize=(13, 7.5))
    axes = fig.subplots(2, 2)
    loads = sorted(study.loads)
    for ax, (figure, label, scale) in zip(axes.flat, PLOTTED, strict=True):
        for index, name in enumerate(study.strategies):
            values = []
            for load in loads:
                row = study.row(load, name)
                value = None if row is None else row.figures.get(figure)
                values.append(float("nan") if value is None else value * scale)
            oracle = name == ORACLE
            ax.plot(
                loads,
                values,
                marker="o",
                linestyle="--" if oracle else "-",
                color="black" if oracle else f"C{index % 10}",
                linewidth=2.2 if oracle else 1.4,
                label=name,
            )
        ax.set_title(label)
        ax.set_xlabel("load (share of the saturation rate)")
        if figure.startswith("ttft"):
            ax.set_yscale("log")
            # Plain numbers on the log axis: "350", not "3.5 x 10^2".
            ax.yaxis.set_major_formatter(ScalarFormatter())
            ax.yaxis.set_minor_formatter(NullFormatter())
            low, high = ax.get_ylim()
            # Within a decade 1-2-5 can leave a single label; evenly spaced values read there.
            wide = high > 10 * low
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)) if wide else MaxNLocator(5))
        ax.set_xticks(loads)
        ax.grid(alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    # One legend beside the panels, where it hides no curve.
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=9)
    fig.tight_layout()
    return svg(fig)


def _html(study: Study) -> str:
    intro = (
        f"<p>{html.escape(study.fleet.name)}, {len(study.fleet.replicas)} replicas; workload "
        f"{html.escape(study.workload.name)}: {html.escape(study.workload.describe())} (its own "
        "rate and length give way to each load's rate and the request count)</p>"
        f"<p>{html.escape(study.capacity.describe())}. Seed {study.seed}, "
        f"{study.requests:,} requests per strategy and load (the same arrivals for each), "
        f"metrics scraped every {study.poll_interval:g} s, virtual time.</p>"
        "<p>The oracle (dashed) routes each request where the engines' true state predicts "
        "its first token soonest: a greedy reference no gateway can reach, not a global "
        "optimum. 'vs oracle' is TTFT p99 over the oracle's; the best shipped strategy at "
        "each load is highlighted.</p>"
    )
    parts = [intro, "<h2>Curves against load</h2>", _curves(study)]
    parts += [_table(study, load) for load in study.loads]
    style = (
        "<style>tr.best td{background:#e6f4ea;font-weight:600}"
        "th:first-child,td:first-child{text-align:left}</style>"
    )
    return page("Routing study", style + "\n".join(parts))


__all__ = ["FIGURES", "RISING_NOTE", "document", "write_study"]
