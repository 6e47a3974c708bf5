"""A point's figures: `loadtest run`'s summary in hardware time, and what a sweep adds to it.

- offered_rps: the pace of the measured requests' scheduled sends (open loop).
- served_rps: the pace of their first tokens: the rate at which the server takes requests on.
  Below the knee it follows the sends (first tokens come a short prefill after each send);
  past it a waiting queue builds and the server takes requests on only as fast as it
  finishes others, whatever is offered.
- served_ratio: served_rps / offered_rps, about 1 below the knee, under 1 past it.
- completion_rps: the pace of their completions.
- user_output_tokens_per_s: what one user sees while tokens stream (1 / TPOT p50).

Paces are read between the 20th and 80th percentile event, as `loadtest.playback.capacity`
reads a flooded fleet's pace in virtual time: the first and last requests weigh nothing.
First tokens rather than completions: completions are spread by the spread of answer lengths,
so on a point a few answers long (200 requests at 48 req/s against answers of up to 4 s) the
completions' pace read 0.8 of the sends' while no request waited at all (TTFT p99 22 ms).
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
    "served_rps": "req/s",
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
    ok = [r for r in measured if r.ok]
    offered = None if closed_loop else _rate([r.scheduled_s for r in measured])
    served = _rate([r.sent_s + r.ttft_s for r in ok if r.ttft_s is not None])
    done = _rate([r.sent_s + r.e2e_s for r in ok if r.e2e_s is not None])
    figures["offered_rps"] = offered * scale if offered is not None else None
    figures["served_rps"] = served * scale if served is not None else None
    figures["served_ratio"] = served / offered if served and offered else None
    figures["completion_rps"] = done * scale if done is not None else None
    tpot = figures.get("tpot_p50_s")
    figures["user_output_tokens_per_s"] = 1 / tpot if tpot else None
    figures["time_scale"] = scale
    return summary, figures
