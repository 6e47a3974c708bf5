"""`loadtest suite compare A B`: two suites' results overlaid (their curves on the same axes)
and their points side by side, matched by target-free point label, in one report.html."""

import html
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadtest.analysis.report import bullet_list, fmt, page
from loadtest.analysis.results import new_dir
from loadtest.suite.figures import KEY_FIGURES
from loadtest.suite.report import answers, cell, plots, series_of
from loadtest.suite.store import read_document, slug

# Figures the side-by-side table shows, with B / A.
COMPARED = {
    "output_tokens_per_s": "out tok/s",
    "served_rps": "served req/s",
    "completion_rps": "done req/s",
    "ttft_p50_s": "TTFT p50",
    "ttft_p99_s": "TTFT p99",
    "itl_p50_s": "ITL p50",
    "itl_p99_s": "ITL p99",
    "goodput_fraction": "meet SLOs",
}


@dataclass
class SuiteComparison:
    a: dict[str, Any]
    b: dict[str, Any]
    # (point label, row of A or None, row of B or None), in A's order then B's own.
    matched: list[tuple[str, dict[str, Any] | None, dict[str, Any] | None]]
    directory: Path


def _by_point(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    # Several targets: the label keeps the target; one: the point alone, so two suites run
    # against different targets still line up.
    several = len({row["target"] for row in document["points"]}) > 1
    return {
        (f"{row['target']} " if several else "") + row["point"]: row for row in document["points"]
    }


def compare_suites(a_dir: Path, b_dir: Path, out: Path) -> SuiteComparison:
    a, b = read_document(a_dir), read_document(b_dir)
    rows_a, rows_b = _by_point(a), _by_point(b)
    labels = [*rows_a, *(label for label in rows_b if label not in rows_a)]
    matched = [(label, rows_a.get(label), rows_b.get(label)) for label in labels]
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    directory = new_dir(out / f"suite-compare-{slug(a['suite'])}-vs-{slug(b['suite'])}-{stamp}")
    result = SuiteComparison(a, b, matched, directory)
    _write(result, a_dir, b_dir)
    return result


def _cell(row: dict[str, Any] | None, key: str) -> str:
    if row is None:
        return "-"
    value, unit = row.get(key), KEY_FIGURES.get(key, "")
    return fmt(value, unit) if unit in ("s", "") else cell(value, "rate")


def ratio(a: dict[str, Any] | None, b: dict[str, Any] | None, key: str) -> float | None:
    """B / A of a figure, None when either is missing or A is 0."""
    if a is None or b is None or not a.get(key) or b.get(key) is None:
        return None
    return float(b[key]) / float(a[key])


def _table(result: SuiteComparison) -> str:
    head = ["point"] + [f"{name}: A / B (B/A)" for name in COMPARED.values()]
    lines = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for label, a, b in result.matched:
        cells = [html.escape(label)]
        for key in COMPARED:
            r = ratio(a, b, key)
            shown = f" ({r:.2f})" if r is not None else ""
            cells.append(f"{_cell(a, key)} / {_cell(b, key)}{shown}")
        lines.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "\n".join(lines) + "</table>"


def _write(result: SuiteComparison, a_dir: Path, b_dir: Path) -> Path:
    a, b = result.a, result.b
    first = series_of(a, "A")
    series = first + series_of(b, "B", start=len(first))
    body = [
        bullet_list(
            [
                f"A = suite {a['suite']} ({a_dir}), {len(a['points'])} points, {a['status']}",
                f"B = suite {b['suite']} ({b_dir}), {len(b['points'])} points, {b['status']}",
                "figures in hardware time; ratios are B / A",
            ]
        ),
        "<h2>Answers</h2>",
        bullet_list([f"A: {line}" for line in answers(a)] + [f"B: {line}" for line in answers(b)]),
        plots(series),
        "<h2>Points side by side</h2>",
        _table(result),
    ]
    path = result.directory / "report.html"
    path.write_text(page(f"suite {a['suite']} vs {b['suite']}", "\n".join(body)))
    return path
