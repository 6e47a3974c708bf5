"""From both sides' runs of one schedule to differences, a verdict and observations."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from loadtest.analysis.stats import Difference, Side, compare_sides
from loadtest.analysis.summary import in_warmup, summarize
from loadtest.analysis.verdict import SideFacts, Verdict, observations, verdict
from loadtest.drive.records import RequestRecord
from loadtest.drive.runner import LAG_BUDGET_S
from loadtest.environments.sampler import ReplicaSample
from loadtest.workload.model import Workload


@dataclass(frozen=True)
class Runs:
    """One side's runs of the schedule (one or more), with what was seen beside them."""

    name: str
    records: list[list[RequestRecord]]
    samples: list[ReplicaSample] = field(default_factory=list)
    counters: dict[str, Any] = field(default_factory=dict)
    # Generator lag p99 of each run, seconds (0 in virtual time).
    lag_p99_s: list[float] = field(default_factory=list)
    # How late the generator read arriving chunks in each run, p99 seconds.
    read_delay_p99_s: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Judged:
    differences: list[Difference]
    verdict: Verdict
    observations: list[str]
    runs: int
    # Measured requests per run (warm-up excluded).
    requests: int

    def by_name(self, figure: str) -> Difference:
        return next(d for d in self.differences if d.figure == figure)


def measured(records: Sequence[RequestRecord], workload: Workload) -> list[RequestRecord]:
    warm = in_warmup(records, workload)
    return [r for r in records if r.index not in warm]


def judge(
    a: Runs,
    b: Runs,
    workload: Workload,
    *,
    window_s: float,
    resamples: int,
    seed: int,
    min_effect: float,
    only: Sequence[str] | None = None,
    window_b_s: float | None = None,
) -> Judged:
    """Compare the sides' pooled runs (warm-up excluded) and name the better one, if any.
    Rates are per `window_s` on both sides, unless B has its own `window_b_s` (a closed loop,
    where each side sends at its own pace)."""
    runs_a = [measured(run, workload) for run in a.records]
    runs_b = [measured(run, workload) for run in b.records]
    side_a = Side.of_runs(runs_a, duration_s=window_s, slo=workload.slo)
    side_b = Side.of_runs(runs_b, duration_s=window_b_s or window_s, slo=workload.slo)
    diffs = compare_sides(
        side_a, side_b, resamples=resamples, seed=seed, min_effect=min_effect, only=only
    )
    cautions = _lag_cautions(a, b)
    if only is not None and not {"ttft_p99_s", "goodput_rps", "error_rate"} <= set(only):
        return Judged(diffs, Verdict("", None), [], len(runs_a), len(runs_a[0]) if runs_a else 0)
    decision = verdict(diffs, a.name, b.name, cautions=cautions)
    facts = [_facts(side, runs, workload) for side, runs in ((a, runs_a), (b, runs_b))]
    notes = observations(diffs, facts[0], facts[1])
    return Judged(diffs, decision, notes, len(runs_a), len(runs_a[0]) if runs_a else 0)


def _lag_cautions(a: Runs, b: Runs) -> list[str]:
    """One line when the generator sent or read late in any run: those figures describe it
    too (a late read stamps chunks late, so TTFT and ITL include the client)."""
    late = [
        (side.name, k + 1, worst)
        for side in (a, b)
        for k, worst in enumerate(_worst_delays(side))
        if worst > LAG_BUDGET_S
    ]
    if not late:
        return []
    runs = len(a.lag_p99_s) + len(b.lag_p99_s)
    lags = [lag * 1000 for _, _, lag in late]
    which = ", ".join(f"{name} run {k}" for name, k, _ in late)
    return [
        f"the load generator sent or read late in {len(late)} of {runs} runs ({which}: p99 "
        f"{min(lags):.1f}-{max(lags):.1f} ms, budget {LAG_BUDGET_S * 1000:g} ms), so the "
        "figures describe the client too; lower the rate or quiet the machine"
    ]


def _worst_delays(side: Runs) -> list[float]:
    """Per run, the larger of the send lag and the read delay (p99 seconds)."""
    reads = side.read_delay_p99_s + [0.0] * (len(side.lag_p99_s) - len(side.read_delay_p99_s))
    return [max(lag, read) for lag, read in zip(side.lag_p99_s, reads, strict=False)]


def _facts(side: Runs, runs: list[list[RequestRecord]], workload: Workload) -> SideFacts:
    pooled = [r for run in runs for r in run]
    summary = summarize(pooled, workload)
    return SideFacts(
        side.name,
        pooled,
        side.samples,
        max(side.lag_p99_s, default=0.0),
        summary.replica_cv,
        summary.goodput_fraction,
        side.counters,
        max(side.read_delay_p99_s, default=0.0),
    )


def schedule_window(records: Sequence[RequestRecord], fallback_s: float) -> float:
    """The seconds both sides' rates are divided by: the span of the measured schedule, the
    same for both sides (each side's own window ends with its last answer, which would make
    rates differ when the same requests all succeed). A closed loop has no schedule span:
    `fallback_s` (the sides' mean window) stands in."""
    sent = [r.scheduled_s for r in records]
    span = max(sent) - min(sent) if sent else 0.0
    return span if span >= 1.0 else max(fallback_s, 1e-9)
