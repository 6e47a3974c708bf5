"""A point's figures: `loadtest run`'s summary in hardware time, and what a sweep adds to it.

- offered_rps: the pace of the measured requests' scheduled sends (open loop).
- completion_rps: the pace of their completions. A server that keeps up finishes requests as
  fast as they come; past its knee the queue grows and it finishes them at its own pace,
  whatever is offered.
  Both are read between the 20th and 80th percentile event, as `loadtest.playback.capacity`
  reads a flooded fleet's pace in virtual time: the first and last requests, and a long
  answer's tail, weigh nothing, so a short point with long-tailed lengths still reads 1.
- throughput_ratio: completion_rps / offered_rps, about 1 below the knee, under 1 past it.
- user_output_tokens_per_s: what one user sees while tokens stream (1 / TPOT p50).
"""

from collections.abc import Sequence
from typing import Any

import numpy as np

from loadtest.analysis.summary import Summary, in_warmup, summarize, to_hardware
from loadtest.drive.records import RequestRecord
from loadtest.playback.capacity import sustained_rate
from loadtest.workload.model import Workload

# The figures tables and plots show first (the rest follow in the CSV), with their units.
KEY_FIGURES = {
    "offered_rps": "req/s",
    "completion_rps": "req/s",
    "throughput_rps": "req/s",
    "output_tokens_per_s": "tokens/s",
    "goodput_rps": "req/s",
    "goodput_fraction": "",
    "error_rate": "",
    "ttft_p50_s": "s",
    "ttft_p99_s": "s",
    "itl_p50_s": "s",
    "itl_p99_s": "s",
    "tpot_p50_s": "s",
    "e2e_p99_s": "s",
    "lag_p99_s": "s",
}


def _rate(times: Sequence[float]) -> float | None:
    try:
        rate = sustained_rate(times)
    except ValueError:  # fewer than 10 events
        return None
    return rate if np.isfinite(rate) else None


def point_figures(
    records: Sequence[RequestRecord], judged: Workload, *, scale: float, closed_loop: bool
) -> tuple[Summary, dict[str, Any]]:
    """The run's summary (wall time, under `judged`'s warm-up and SLOs) and the point's
    figures in hardware time (a fleet played `scale` times slower: rates times it, latencies
    divided by it; the generator's lag stays wall time)."""
    summary = summarize(records, judged)
    figures: dict[str, Any] = to_hardware(summary.to_dict(), scale)
    warm = in_warmup(records, judged)
    measured = [r for r in records if r.index not in warm]
    ends = [r.sent_s + r.e2e_s for r in measured if r.ok and r.e2e_s is not None]
    offered = None if closed_loop else _rate([r.scheduled_s for r in measured])
    done = _rate(ends)
    figures["offered_rps"] = offered * scale if offered is not None else None
    figures["completion_rps"] = done * scale if done is not None else None
    figures["throughput_ratio"] = done / offered if done and offered else None
    tpot = figures.get("tpot_p50_s")
    figures["user_output_tokens_per_s"] = 1 / tpot if tpot else None
    figures["time_scale"] = scale
    return summary, figures
