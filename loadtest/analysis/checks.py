"""Whether a run measured what it meant to: prompts served at the length asked for, and a
generator that kept up on the read side (the send side: `LagStats` in the runner).

Both produce warnings `loadtest run` prints and `loadtest compare` adds to its notes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from loadtest.drive.records import RequestRecord
from loadtest.drive.runner import LAG_BUDGET_S, LagStats

# Served prompt tokens may differ from those asked for by this much before a warning.
PROMPT_TOLERANCE = 0.05


def prompt_lengths(records: Sequence[RequestRecord]) -> dict[str, tuple[int, int, int]]:
    """Per model: (requests, prompt tokens asked for, served), over successful requests
    whose usage reported prompt tokens."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in records:
        if r.ok and r.requested_prompt_tokens is not None and r.prompt_tokens is not None:
            entry = totals[r.model]
            entry[0] += 1
            entry[1] += r.requested_prompt_tokens
            entry[2] += r.prompt_tokens
    return {model: (n, asked, served) for model, (n, asked, served) in sorted(totals.items())}


def prompt_length_warnings(
    records: Sequence[RequestRecord], *, tokenizer_given: bool, label: str = ""
) -> list[str]:
    """One line per model whose served prompt tokens differ by more than 5% from those
    asked for (the workload's lengths did not reach the server)."""
    lines = []
    for model, (n, asked, served) in prompt_lengths(records).items():
        if not asked or abs(served / asked - 1) <= PROMPT_TOLERANCE:
            continue
        hint = (
            "the tokenizer given is not the served model's, or the server counts differently"
            if tokenizer_given
            else "prompts were sized with the simulator's approximate tokenizer: give "
            "--tokenizer with the model's tokenizer (a directory or a cached model name)"
        )
        lines.append(
            f"{label}{model}: the server counted {served:,} prompt tokens where {asked:,} were "
            f"asked for ({served / asked - 1:+.1%} over {n} requests); {hint}"
        )
    return lines


def read_delay_line(read_delay: LagStats) -> tuple[bool, str]:
    """(within budget, one line) about how late the generator read arriving chunks."""
    p50, p99 = read_delay.p50_s * 1000, read_delay.p99_s * 1000
    budget = LAG_BUDGET_S * 1000
    if read_delay.ok:
        return True, f"generator read delay p50 {p50:.2f} ms, p99 {p99:.2f} ms (under the " + (
            f"{budget:.0f} ms budget)"
        )
    return False, (
        f"generator read delay p99 {p99:.1f} ms exceeds {budget:.0f} ms: arriving chunks "
        "waited that long for this client before being timed, so TTFT and ITL include the "
        "client's own delay; lower the rate or use a faster machine."
    )
