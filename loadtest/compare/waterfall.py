"""report.html's attribution (`--explain`): a waterfall per explained figure, and its table.

A waterfall starts from A's value, adds each step's contribution as a floating bar (green
when the change made the figure better, red when worse, grey when not beyond noise and the
minimum effect) with its 95% interval, and ends at B's value. The band across each plot is
the comparison of A and B itself (A + its difference, with its interval): the chain's ends
are the comparison's own runs of A and B, so the steps end on its line.
"""

import html
import textwrap

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from loadtest.analysis.report import svg
from loadtest.analysis.stats import Difference
from loadtest.compare.explain import (
    EXPLAINED,
    UNITS,
    Attribution,
    consistency,
    interval,
    number,
)
from loadtest.compare.sweep import LABELS

_BETTER, _WORSE, _NOISE, _END = "#2ca02c", "#d62728", "#bbbbbb", "#777777"


def explain_section(found: Attribution | str) -> str:
    """The section: what was played, the waterfalls, the step table; or why there is none."""
    if isinstance(found, str):
        return f"<h2>Why B differs from A</h2><p>{html.escape(found)}</p>"
    order = ", ".join(link.change or "" for link in found.links[1:])
    head = (
        f"<h2>Why B differs from A: one change at a time, in virtual time at load "
        f"{found.load:.2f} ({found.rate:.1f} req/s)</h2>"
        f"<p class='small'>Each link of the chain plays the same {found.requests}-request "
        f"schedule; a step is the paired comparison of two adjacent links (95% interval, "
        f"widened for autocorrelation). Steps, in this order: {html.escape(order)}. Where "
        "changes interact, another order would share the total out differently.</p>"
    )
    said = consistency(found)
    note = said[0].upper() + said[1:] + "."
    return head + waterfall(found) + _table(found) + f"<p>{html.escape(note)}</p>"


def waterfall(found: Attribution) -> str:
    fig = Figure(figsize=(15, 5.0))
    for ax, figure in zip(fig.subplots(1, len(EXPLAINED)), EXPLAINED, strict=True):
        _one(ax, found, figure)
    fig.tight_layout()
    return svg(fig)


def _one(ax: Axes, found: Attribution, figure: str) -> None:
    """A bridge from A's value to B's: A and B as thick marks, each step a floating bar with
    its interval; the axis spans the values, not zero, so that small steps show."""
    scale = 1.0 if figure == "goodput_rps" else 1000.0
    unit = "req/s" if figure == "goodput_rps" else "ms"
    ax.set_title(f"{LABELS[figure]} ({unit})")
    values = [link[figure] * scale for link in found.values]
    steps = [f"{k}. {step.knob}" for k, step in enumerate(found.steps, start=1)]
    names = [f"A {found.links[0].name}", *steps, f"B {found.links[-1].name}"]
    ax.set_xticks(range(len(names)), [_wrap(n) for n in names], fontsize=8)
    if not all(np.isfinite(values)):
        ax.text(0.5, 0.5, "failures on a link: infinite, not drawn", ha="center",
                transform=ax.transAxes)  # fmt: skip
        return
    seen = [values[0], values[-1]]
    total = found.total[figure]
    if np.isfinite(total.diff) and np.isfinite(total.low) and np.isfinite(total.high):
        low, high = values[0] + total.low * scale, values[0] + total.high * scale
        ax.axhspan(low, high, color="#1f77b4", alpha=0.12, label="A -> B compared, 95% CI")
        ax.axhline(values[0] + total.diff * scale, color="#1f77b4", linewidth=1, linestyle="--")
        seen += [low, high]
    last = len(found.steps) + 1
    for x, value in ((0, values[0]), (last, values[-1])):
        ax.hlines(value, x - 0.3, x + 0.3, color=_END, linewidth=4)
        ax.annotate(number(value / scale, figure), (x, value), textcoords="offset points",
                    xytext=(0, 6), ha="center", fontsize=8)  # fmt: skip
    level = values[0]
    for k, step in enumerate(found.steps, start=1):
        d = step.differences[figure]
        change = d.diff * scale
        color = _NOISE if d.winner is None else _BETTER if d.winner == "b" else _WORSE
        ax.bar(k, change, bottom=level, color=color, width=0.6)
        end = level + change
        top = (end + (d.low - d.diff) * scale, end + (d.high - d.diff) * scale)
        ax.vlines(k, top[0], top[1], color="#333", linewidth=1)
        ax.hlines(top, k - 0.08, k + 0.08, color="#333", linewidth=1)
        ax.annotate(number(d.diff, figure, signed=True), (k, max(top[1], level, end)),
                    textcoords="offset points",
                    xytext=(0, 4), ha="center", fontsize=8)  # fmt: skip
        ax.plot([k - 0.7, k - 0.3], [level, level], color="#555", linewidth=0.6)
        seen += [level, level + change, *top]
        level += change
    ax.plot([last - 0.7, last - 0.3], [level, level], color="#555", linewidth=0.6)
    # At least the minimum effect either side of A: noise then looks as small as it is.
    least = total.min_effect * abs(values[0])
    low, high = min(*seen, values[0] - least), max(*seen, values[0] + least)
    margin = max((high - low) * 0.1, 1e-9)
    ax.set_ylim(low - margin, high + margin)
    ax.set_xlim(-0.6, last + 0.8)
    ax.grid(True, axis="y", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize="small")


def _wrap(change: str) -> str:
    return "\n".join(textwrap.wrap(change, 14))


def _table(found: Attribution) -> str:
    head = "<tr><th></th><th>change</th>" + "".join(
        f"<th>{LABELS[f]} ({UNITS[f]})</th>" for f in EXPLAINED
    )

    def values(k: int) -> str:
        return "".join(f"<td>{number(found.values[k][f], f)}</td>" for f in EXPLAINED)

    def cell(d: Difference) -> str:
        cls = {"a": "worse", "b": "better", None: "ns"}[d.winner]
        return f'<td class="{cls}">{interval(d)}</td>'

    rows = [head + "</tr>", f"<tr><td>A {html.escape(found.links[0].name)}</td><td></td>"]
    rows[-1] += values(0) + "</tr>"
    for k, step in enumerate(found.steps, start=1):
        name = html.escape(f"{k}. {step.after}")
        cells = "".join(cell(step.differences[f]) for f in EXPLAINED)
        rows.append(f"<tr><td>{name}</td><td>{html.escape(step.change)}</td>{cells}</tr>")
    rows.append(f"<tr><td>B {html.escape(found.links[-1].name)}</td><td></td>{values(-1)}</tr>")
    sums = "".join(f"<td>{number(found.sum_of_steps(f), f, signed=True)}</td>" for f in EXPLAINED)
    rows.append(f"<tr><td>sum of the steps</td><td></td>{sums}</tr>")
    totals = "".join(cell(found.total[f]) for f in EXPLAINED)
    rows.append(f"<tr><td>A -> B, compared</td><td></td>{totals}</tr>")
    return "<table class='explain'>" + "".join(rows) + "</table>"
