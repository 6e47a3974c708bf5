"""Figures of a run: throughput, goodput, errors, latency percentiles, spread over replicas.

Warm-up requests (per the workload) are left out, but never more than half of them, so that a
short run still has figures.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from loadtest.drive.records import RequestRecord
from loadtest.workload import Warmup, Workload

QUANTILES = (50, 90, 99)


@dataclass(frozen=True, slots=True)
class Percentiles:
    """p50/p90/p99/max/mean of a sample, in seconds; all None for an empty sample."""

    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    max: float | None = None
    mean: float | None = None
    count: int = 0

    @classmethod
    def of(cls, values: Iterable[float]) -> Percentiles:
        array = np.fromiter(values, dtype=float)
        if array.size == 0:
            return cls()
        p50, p90, p99 = (float(v) for v in np.percentile(array, QUANTILES))
        return cls(p50, p90, p99, float(array.max()), float(array.mean()), int(array.size))


@dataclass(frozen=True)
class Summary:
    requests: int
    ok: int
    errors: int
    error_rate: float
    warmup_excluded: int
    # From the first measured send to the last measured end.
    window_s: float
    throughput_rps: float
    output_tokens_per_s: float
    prompt_tokens_per_s: float
    # Successful requests meeting the workload's TTFT and TPOT targets.
    goodput_rps: float
    goodput_fraction: float
    ttft: Percentiles
    itl: Percentiles
    tpot: Percentiles
    e2e: Percentiles
    lag: Percentiles
    # Over chunks with visible text only (blank token chunks left out); docs/loadtest.md.
    ttft_visible: Percentiles
    itl_visible: Percentiles
    # Prompt tokens asked for and served (usage), over successful requests that report both.
    prompt_tokens_requested: int
    prompt_tokens_served: int
    # (replica, requests) sorted by name; "-" when the target names none.
    replicas: tuple[tuple[str, int], ...]
    errors_by_kind: tuple[tuple[str, int], ...]

    @property
    def prompt_tokens_ratio(self) -> float | None:
        """Served / requested prompt tokens; None when nothing reported usage."""
        if not self.prompt_tokens_requested:
            return None
        return self.prompt_tokens_served / self.prompt_tokens_requested

    @property
    def replica_max_share(self) -> float | None:
        total = sum(n for _, n in self.replicas)
        return max(n for _, n in self.replicas) / total if total else None

    @property
    def replica_cv(self) -> float | None:
        """Coefficient of variation of requests per replica: 0 is a perfectly even spread."""
        counts = np.array([n for _, n in self.replicas], dtype=float)
        if counts.size == 0 or counts.mean() == 0:
            return None
        return float(counts.std() / counts.mean())

    def to_dict(self) -> dict[str, float | int | None]:
        """Every figure under a flat name (seconds for times); None where there is no data."""
        out: dict[str, float | int | None] = {
            "requests": self.requests,
            "ok": self.ok,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "warmup_excluded": self.warmup_excluded,
            "window_s": self.window_s,
            "throughput_rps": self.throughput_rps,
            "output_tokens_per_s": self.output_tokens_per_s,
            "prompt_tokens_per_s": self.prompt_tokens_per_s,
            "goodput_rps": self.goodput_rps,
            "goodput_fraction": self.goodput_fraction,
        }
        for name in ("ttft", "itl", "tpot", "e2e", "lag", "ttft_visible", "itl_visible"):
            stats: Percentiles = getattr(self, name)
            for q in ("p50", "p90", "p99", "max", "mean"):
                out[f"{name}_{q}_s"] = getattr(stats, q)
        out["prompt_tokens_requested"] = self.prompt_tokens_requested
        out["prompt_tokens_served"] = self.prompt_tokens_served
        out["prompt_tokens_served_ratio"] = self.prompt_tokens_ratio
        out["replicas_used"] = sum(1 for _, n in self.replicas if n)
        out["replica_max_share"] = self.replica_max_share
        out["replica_cv"] = self.replica_cv
        return out


def to_hardware(
    figures: dict[str, float | int | None], scale: float
) -> dict[str, float | int | None]:
    """`Summary.to_dict()` figures of a fleet played `scale` times slower, as its hardware
    would show them: rates times the scale, latencies divided by it. The window and the
    generator's lag are the client's wall time and stay as they are."""
    out = dict(figures)
    for key, value in figures.items():
        if not isinstance(value, float) or key == "window_s" or key.startswith("lag_"):
            continue
        if key.endswith(("_rps", "_per_s")):
            out[key] = value * scale
        elif key.endswith("_s"):
            out[key] = value / scale
    return out


def in_warmup(records: Sequence[RequestRecord], workload: Workload) -> set[int]:
    """Indexes of the records the workload's warm-up excludes (at most half of them)."""
    warm = workload.warmup
    excluded = [r.index for r in records if r.index < warm.requests or r.scheduled_s < warm.seconds]
    if len(excluded) > len(records) // 2:
        excluded = sorted(excluded)[: len(records) // 2]
    return set(excluded)


def meets_slo(record: RequestRecord, workload: Workload) -> bool:
    if not record.ok:
        return False
    slo = workload.slo
    if slo.ttft_s is not None and (record.ttft_s is None or record.ttft_s > slo.ttft_s):
        return False
    return not (slo.tpot_s is not None and record.tpot_s is not None and record.tpot_s > slo.tpot_s)


def summarize(records: Sequence[RequestRecord], workload: Workload) -> Summary:
    """The figures of `records` under `workload`'s warm-up and SLO targets."""
    warm = in_warmup(records, workload)
    measured = [r for r in records if r.index not in warm]
    ok = [r for r in measured if r.ok]
    starts = [r.sent_s for r in measured]
    ends = [r.sent_s + (r.e2e_s or 0.0) for r in measured]
    window = (max(ends) - min(starts)) if measured else 0.0
    per_s = 1.0 / window if window > 0 else 0.0
    good = sum(1 for r in ok if meets_slo(r, workload))
    replicas = Counter(r.replica or "-" for r in ok)
    kinds = Counter(r.error_kind or "" for r in measured if not r.ok)
    visible = [r.visible() for r in ok]
    counted = [
        (r.requested_prompt_tokens, r.prompt_tokens)
        for r in ok
        if r.requested_prompt_tokens is not None and r.prompt_tokens is not None
    ]
    return Summary(
        requests=len(measured),
        ok=len(ok),
        errors=len(measured) - len(ok),
        error_rate=(len(measured) - len(ok)) / len(measured) if measured else 0.0,
        warmup_excluded=len(warm),
        window_s=window,
        throughput_rps=len(ok) * per_s,
        output_tokens_per_s=sum(r.output_tokens or 0 for r in ok) * per_s,
        prompt_tokens_per_s=sum(r.prompt_tokens or 0 for r in ok) * per_s,
        goodput_rps=good * per_s,
        goodput_fraction=good / len(measured) if measured else 0.0,
        ttft=Percentiles.of(r.ttft_s for r in ok if r.ttft_s is not None),
        itl=Percentiles.of(gap for r in ok for gap in r.itl_s),
        tpot=Percentiles.of(r.tpot_s for r in ok if r.tpot_s is not None),
        e2e=Percentiles.of(r.e2e_s for r in ok if r.e2e_s is not None),
        lag=Percentiles.of(r.lag_s for r in measured),
        ttft_visible=Percentiles.of(t for t, _ in visible if t is not None),
        itl_visible=Percentiles.of(gap for _, gaps in visible for gap in gaps),
        prompt_tokens_requested=sum(asked for asked, _ in counted),
        prompt_tokens_served=sum(served for _, served in counted),
        replicas=tuple(sorted(replicas.items())),
        errors_by_kind=tuple(sorted(kinds.items())),
    )


def summarize_by_model(records: Sequence[RequestRecord], workload: Workload) -> dict[str, Summary]:
    """One summary per model asked for (warm-up decided over the whole run)."""
    warm = in_warmup(records, workload)
    measured = [r for r in records if r.index not in warm]
    models = sorted({r.model for r in measured})
    no_warmup = replace(workload, warmup=Warmup())
    return {m: summarize([r for r in measured if r.model == m], no_warmup) for m in models}
