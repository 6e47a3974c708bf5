"""What a point must not do: the stop conditions of a sweep and the targets of a search.

A point fails when any limit given is crossed; the first one crossed is named, in words. In a
sweep, the first failing point of a line is its saturation point and ends the line; in a
search, a failing probe bounds the answer from above. Figures are in hardware time.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

Figures = Mapping[str, Any]


@dataclass(frozen=True)
class Conditions:
    # Fails above: share of requests that failed.
    error_rate: float | None = None
    # Fails above: TTFT p99, seconds.
    ttft_p99: float | None = None
    # Fails when goodput (req/s meeting the SLOs) falls this share below the best earlier
    # point of the line.
    goodput_drop: float | None = None
    # Fails below: requests taken on per second (first tokens) over the offered rate (open
    # loop). Under 1 a waiting queue grows: the server no longer keeps up (the knee).
    served_ratio: float | None = None
    # Fails below: share of requests meeting the workload's SLO targets.
    goodput_fraction: float | None = None

    def given(self) -> dict[str, float]:
        return {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }

    def describe(self) -> str:
        words = {
            "error_rate": "error rate above {:.0%}",
            "ttft_p99": "TTFT p99 above {:g} s",
            "goodput_drop": "goodput {:.0%} below the best so far",
            "served_ratio": "requests served below {:.0%} of the offered rate",
            "goodput_fraction": "fewer than {:.0%} of requests meeting the SLOs",
        }
        return ", ".join(words[name].format(limit) for name, limit in self.given().items())

    def failed(self, figures: Figures, earlier: Sequence[Figures] = ()) -> str | None:
        """The first limit `figures` cross, in words; None when none is."""
        errors = figures.get("error_rate")
        if self.error_rate is not None and errors is not None and errors > self.error_rate:
            return f"error rate {errors:.1%} > {self.error_rate:.1%}"
        if self.ttft_p99 is not None:
            p99 = figures.get("ttft_p99_s")
            if p99 is None:
                return "no request got a first token"
            if p99 > self.ttft_p99:
                return f"TTFT p99 {p99:.3g} s > {self.ttft_p99:g} s"
        if self.served_ratio is not None:
            ratio = figures.get("served_ratio")
            if ratio is not None and ratio < self.served_ratio:
                served, offered = figures.get("served_rps"), figures.get("offered_rps")
                return (
                    f"served {served:.3g} req/s, {ratio:.2f} of the offered {offered:.3g} "
                    f"(< {self.served_ratio:g}): a queue grows"
                )
        if self.goodput_fraction is not None:
            share = figures.get("goodput_fraction") or 0.0
            if share < self.goodput_fraction:
                return f"{share:.1%} of requests met the SLOs (< {self.goodput_fraction:.0%})"
        if self.goodput_drop is not None and earlier:
            best = max((f.get("goodput_rps") or 0.0) for f in earlier)
            now = figures.get("goodput_rps") or 0.0
            if best > 0 and now < best * (1 - self.goodput_drop):
                return (
                    f"goodput {now:.3g} req/s, {1 - now / best:.0%} below the best so far "
                    f"({best:.3g})"
                )
        return None
