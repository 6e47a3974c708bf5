"""report.html of a suite, drawn from its results directory alone (so a resumed suite and
`suite compare` draw the same way): what ran, the answers, throughput against latency, figures
against the swept value, telemetry over time and the table of points."""

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtest.analysis.report import bullet_list, page
from loadtest.environments.sampler import read_samples
from loadtest.suite.gpu import read_gpu_samples
from loadtest.suite.plots import (
    PALETTE,
    Series,
    Span,
    Timeline,
    against_swept,
    gpu_timeline,
    replica_timeline,
    throughput_latency,
)
from loadtest.suite.store import read_document

NO_GPU = "<p>GPU telemetry: {}.</p>"


def swept_fields(document: dict[str, Any]) -> tuple[list[str], str | None]:
    """(fields naming a series, the field varying along it) from the suite's definition."""
    definition = document["definition"]
    axes = [name for name, _ in definition.get("axes") or []]
    search = definition.get("search")
    if search:
        return axes, search["field"]
    if definition.get("combine") == "zip":
        return [], axes[0] if axes else None
    return axes[:-1], axes[-1] if axes else None


def series_of(document: dict[str, Any], prefix: str = "", start: int = 0) -> list[Series]:
    """The document's points grouped into series: per target, per line."""
    line_fields, x_field = swept_fields(document)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in document["points"]:
        line = ", ".join(f"{f}={row.get(f)}" for f in line_fields)
        groups.setdefault((row["target"], line), []).append(row)
    out = []
    for i, ((target, line), rows) in enumerate(groups.items()):
        label = " ".join(part for part in (prefix, target, line) if part)
        out.append(Series(label, rows, PALETTE[(start + i) % len(PALETTE)], x_field))
    return out


def timelines(directory: Path, document: dict[str, Any]) -> list[Timeline]:
    rows = document["points"]
    if not rows:
        return []
    origin = min(row["started_at"] for row in rows)
    gpus = read_gpu_samples(directory / "gpu.jsonl")
    out = []
    for target in dict.fromkeys(row["target"] for row in rows):
        own = [row for row in rows if row["target"] == target]
        spans = [
            Span(str(row["order"]), row["started_at"] - origin, row["ended_at"] - origin)
            for row in own
        ]
        replicas = [
            s for row in own for s in read_samples(directory / row["directory"] / "replicas.jsonl")
        ]
        first, last = own[0]["started_at"], own[-1]["ended_at"]
        mine = [s for s in gpus if first - 1 <= s.at <= last + 1]
        out.append(Timeline(target, spans, replicas, mine, origin))
    return out


# (header, figure, unit) of the points table: the figures people compare; the CSV has all.
COLUMNS = (
    ("offered req/s", "offered_rps", "rate"),
    ("served req/s", "served_rps", "rate"),
    ("done req/s", "completion_rps", "rate"),
    ("output tok/s", "output_tokens_per_s", "rate"),
    ("TTFT p50 ms", "ttft_p50_s", "ms"),
    ("TTFT p99 ms", "ttft_p99_s", "ms"),
    ("ITL p50 ms", "itl_p50_s", "ms"),
    ("ITL p99 ms", "itl_p99_s", "ms"),
    ("TPOT p50 ms", "tpot_p50_s", "ms"),
    ("meet SLOs", "goodput_fraction", "%"),
    ("errors", "error_rate", "%"),
    ("lag p99 ms", "lag_p99_s", "ms"),
    ("measured", "requests", "count"),
)


def cell(value: Any, unit: str) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    if unit == "ms":
        return f"{value * 1000:.1f}" if value < 0.1 else f"{value * 1000:.0f}"
    if unit == "%":
        return f"{value:.0%}" if value in (0, 1) else f"{value:.1%}"
    if unit == "count" or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _table(rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> str:
    several = len({row["target"] for row in rows}) > 1
    head = [*(["target"] if several else []), "#", *fields, *(c[0] for c in COLUMNS), ""]
    lines = ["<table class='points'><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head)]
    for row in rows:
        cells = [html.escape(str(row["target"]))] if several else []
        cells.append(str(row["order"]))
        cells += [html.escape(str(row.get(f, ""))) for f in fields]
        # Closed loop sends when an answer ends: there is no schedule to be late for.
        shown = {**row, "lag_p99_s": None} if row.get("closed_loop") else row
        cells += [cell(shown.get(key), unit) for _, key, unit in COLUMNS]
        note = html.escape(row.get("failed") or "")
        if row.get("saturation"):
            note = f"<b>saturation point</b>: {note}"
        elif row.get("answer"):
            note = "<b>answer</b> (highest passing)"
        cells.append(note)
        kind = "sat" if row.get("saturation") else "ans" if row.get("answer") else ""
        lines.append(f"<tr class='{kind}'>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "<div class='wide'>" + "\n".join(lines) + "</table></div>"


def answers(document: dict[str, Any]) -> list[str]:
    """The suite's answers in words: saturation points, search results, skipped points."""
    out = []
    for target in document["targets"]:
        for found in target["saturation"]:
            where = f" ({found['line']})" if found["line"] else ""
            served = found.get("served_rps")
            rate = f"; it served {served:.3g} req/s there" if served is not None else ""
            out.append(
                f"{target['name']}{where}: saturation point at {found['point']}: "
                f"{found['reason']}{rate}"
            )
        out += [f"{target['name']}: {answer['text']}" for answer in target["answers"]]
        if not target["saturation"] and not target["answers"] and target["points"]:
            limits = document["definition"].get("stop_when")
            if limits:
                out.append(f"{target['name']}: no point crossed a limit ({_limits(limits)})")
    rows = document["points"]
    if len(rows) <= 4:
        out += [_experience(row, len(document["targets"]) > 1) for row in rows]
        if target["skipped"]:
            out.append(
                f"{target['name']}: skipped after saturation: {'; '.join(target['skipped'])}"
            )
    return out


def _limits(given: dict[str, float]) -> str:
    from loadtest.suite.conditions import Conditions

    return Conditions(**given).describe()


def _experience(row: dict[str, Any], several: bool) -> str:
    """What a point's users got, in one sentence."""
    where = f"{row['target']} " if several else ""
    user = row.get("user_output_tokens_per_s")
    each = f", each user {user:.0f} tokens/s while streaming" if user else ""
    return (
        f"{where}at {row['point']}: TTFT p50 {cell(row.get('ttft_p50_s'), 'ms')} ms, "
        f"p99 {cell(row.get('ttft_p99_s'), 'ms')} ms{each}, "
        f"{cell(row.get('output_tokens_per_s'), 'rate')} output tokens/s in all, "
        f"{cell(row.get('goodput_fraction'), '%')} of requests met the SLOs"
    )


def _metadata(document: dict[str, Any]) -> str:
    from loadtest.suite.store import flatten

    meta = flatten(document.get("metadata") or {})
    if not meta:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in meta.items()
    )
    return "<h2>Metadata (recorded, not set by loadtest)</h2><table>" + rows + "</table>"


_STYLE = (
    "<style>tr.sat td{background:#fde0dc}tr.ans td{background:#fff6cc}"
    ".wide{overflow-x:auto}table.points{font-size:.85em}table.points td:last-child"
    "{text-align:left;max-width:28em}</style>"
)


def plots(series: Sequence[Series]) -> str:
    parts = ["<h2>Throughput against latency</h2>", throughput_latency(series)]
    swept = against_swept(series)
    if swept is not None:
        parts += [f"<h2>Against {html.escape(series[0].x_field or '')}</h2>", swept]
    return "\n".join(parts)


def write_suite_report(directory: Path) -> Path:
    document = read_document(directory)
    line_fields, x_field = swept_fields(document)
    fields = [*line_fields, *([x_field] if x_field else [])]
    rows = document["points"]
    targets = [f"{t['description']} (time scale {t['time_scale']:g})" for t in document["targets"]]
    intro = [
        f"{document['status']}: {len(rows)} point(s), {document['wall_time_s']:.0f} s of wall time",
        f"source: {document['source']}",
        *[f"target {t}" for t in targets],
        f"workload {document.get('workload', '')}",
        "figures are in hardware time: a simulated fleet played F times slower has its rates "
        "multiplied and its latencies divided by F (generator lag stays wall time)",
    ]
    body = [
        _STYLE,
        f"<p>{html.escape(document.get('description') or '')}</p>",
        bullet_list(intro),
        "<h2>Answers</h2>",
        bullet_list(answers(document) or ["no points were measured"]),
    ]
    if document.get("notes"):
        body += ["<h2>Notes</h2>", bullet_list(document["notes"])]
    body.append(_metadata(document))
    if rows:
        body.append(plots(series_of(document)))
    lines = timelines(directory, document)
    body.append("<h2>Replica queue, batch and KV usage over time</h2>")
    body.append(replica_timeline(lines) or "<p>No replica samples.</p>")
    body.append("<h2>GPU telemetry over time</h2>")
    body.append(
        gpu_timeline(lines) or NO_GPU.format(html.escape(document.get("gpu_telemetry") or ""))
    )
    body += ["<h2>Points</h2>", _table(rows, fields)]
    path = directory / "report.html"
    path.write_text(page(f"suite {document['suite']}", "\n".join(body)))
    return path
