"""The one-line verdict of a comparison, and the observations beside it.

The verdict looks at three figures only, in order: the error rate (a side that fails more
requests is worse), then TTFT p99 (what the slowest users wait) and goodput (requests per
second that meet the workload's targets) together. No other figure is quoted in its place
when these tie. The observations come from the records (per model, per replica) and from the
replicas' sampled queue and KV usage; what they suggest as causes is labelled a hypothesis,
for either outcome, since only an ablation would measure it.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loadtest.analysis.stats import Difference
from loadtest.drive.records import RequestRecord
from loadtest.drive.runner import LAG_BUDGET_S
from loadtest.environments.sampler import ReplicaSample

KEY_FIGURES = ("error_rate", "ttft_p99_s", "goodput_rps")
# An error rate this much higher (absolute), beyond noise, decides against a side.
ERROR_MARGIN = 0.005
# Below these (most waiting on one replica, peak KV usage) a fleet counts as lightly loaded.
LIGHT_QUEUE = 5
LIGHT_KV = 0.5


@dataclass(frozen=True)
class SideFacts:
    """What a side's run looked like, for explaining the verdict."""

    name: str
    records: Sequence[RequestRecord]  # measured ones
    samples: Sequence[ReplicaSample]
    lag_p99_s: float
    replica_cv: float | None
    # Share of measured requests meeting the workload's targets.
    goodput_fraction: float | None = None
    # Engine counters summed over replicas after the run (see sampler.engine_counters).
    counters: dict[str, float] = field(default_factory=dict)
    # How late the generator read arriving chunks, p99 (loadtest/drive/readdelay.py).
    read_delay_p99_s: float = 0.0

    def ttft_p99_by_model(self) -> dict[str, float]:
        by_model: dict[str, list[float]] = defaultdict(list)
        for r in self.records:
            if r.ok and r.ttft_s is not None:
                by_model[r.model].append(r.ttft_s)
        return {m: float(np.percentile(v, 99)) for m, v in sorted(by_model.items())}

    def queue_state(self) -> dict[str, Any]:
        """Mean and peak waiting requests per replica, and peak KV usage, over the run."""
        if not self.samples:
            return {}
        waiting: dict[str, list[float]] = defaultdict(list)
        kv: list[float] = []
        for s in self.samples:
            if s.waiting is not None:
                waiting[s.replica].append(s.waiting)
            if s.kv_usage is not None:
                kv.append(s.kv_usage)
        means = {name: float(np.mean(v)) for name, v in waiting.items()}
        return {
            "mean_waiting_total": float(sum(means.values())),
            "max_waiting": float(max((max(v) for v in waiting.values()), default=0.0)),
            "busiest_replica": max(means, key=lambda n: means[n]) if means else None,
            "busiest_mean_waiting": max(means.values(), default=0.0),
            "max_kv_usage": float(max(kv)) if kv else None,
        }


def _ms(seconds: float) -> str:
    if np.isinf(seconds):
        return "inf (failures)"
    return f"{seconds * 1000:.0f} ms"


def _ci_ms(d: Difference) -> str:
    def one(value: float) -> str:
        return "-inf" if value == -np.inf else "+inf" if value == np.inf else f"{value * 1000:+.0f}"

    return f"95% CI {one(d.low)} .. {one(d.high)} ms"


def describe(d: Difference) -> str:
    """One figure's values, change and interval, in words."""
    if d.figure == "goodput_rps":
        return (
            f"goodput {d.a:.2f} -> {d.b:.2f} req/s "
            f"(95% CI of the difference {d.low:+.2f} .. {d.high:+.2f})"
        )
    if d.figure == "error_rate":
        return f"error rate {d.a:.1%} -> {d.b:.1%} (95% CI {d.low:+.1%} .. {d.high:+.1%})"
    metric, stat, _ = d.figure.split("_")
    rel = f", {d.relative:+.0%}" if d.relative is not None and np.isfinite(d.relative) else ""
    rests = f"; rests on {d.tail} requests beyond it" if d.imprecise else ""
    return f"{metric.upper()} {stat} {_ms(d.a)} -> {_ms(d.b)}{rel} ({_ci_ms(d)}{rests})"


@dataclass(frozen=True)
class Verdict:
    """The one-line answer, the better side when there is one, and why none may be named."""

    line: str
    better: str | None
    # What the answer stood on: error rate, then goodput and TTFT p99.
    decided_by: tuple[str, ...] = ()
    cautions: tuple[str, ...] = ()


def verdict(
    diffs: Sequence[Difference],
    a: str,
    b: str,
    *,
    cautions: Sequence[str] = (),
) -> Verdict:
    """Error rate decides first (a side failing at least ERROR_MARGIN more of its requests,
    beyond noise, is worse whatever its latencies), then TTFT p99 and goodput together. A
    figure counts only when its interval excludes 0 and the effect reaches the minimum
    (analysis.stats); a p99 resting on too few requests counts for nothing. `cautions` (the
    generator over its budget, ...) mean no winner is named at all."""
    by_name = {d.figure: d for d in diffs}
    names = {"a": a, "b": b}
    ttft, good, errors = by_name["ttft_p99_s"], by_name["goodput_rps"], by_name["error_rate"]
    details = f"{describe(ttft)}; {describe(good)}"
    if cautions:
        return Verdict(
            f"no winner named: {'; '.join(cautions)}. Figures: {details}",
            None,
            cautions=tuple(cautions),
        )
    if errors.winner is not None and abs(errors.diff) >= ERROR_MARGIN:
        best = names[errors.winner]
        return Verdict(
            f"{best} is better: it fails fewer requests ({describe(errors)})", best, ("error_rate",)
        )
    ttft_winner = None if ttft.imprecise else ttft.winner
    winners = {w for w in (ttft_winner, good.winner) if w is not None}
    note = (
        f" (TTFT p99 rests on {ttft.tail} requests beyond it: run longer to judge it)"
        if ttft.imprecise
        else ""
    )
    if not winners:
        return Verdict(
            f"no difference between {a} and {b} beyond noise and the {ttft.min_effect:.0%} "
            f"minimum effect, on TTFT p99 or goodput: {details}{note}",
            None,
        )
    if len(winners) == 2:
        return Verdict(
            f"mixed: {names[str(ttft_winner)]} is better on TTFT p99, "
            f"{names[str(good.winner)]} on goodput: {details}",
            None,
            ("ttft_p99_s", "goodput_rps"),
        )
    best = names[winners.pop()]
    if ttft_winner and good.winner:
        return Verdict(
            f"{best} is better on TTFT p99 and goodput: {details}",
            best,
            ("ttft_p99_s", "goodput_rps"),
        )
    which = "TTFT p99" if ttft_winner else "goodput"
    other = "goodput" if ttft_winner else "TTFT p99"
    return Verdict(
        f"{best} is better on {which} ({other}: no difference beyond noise): {details}{note}",
        best,
        ("ttft_p99_s",) if ttft_winner else ("goodput_rps",),
    )


def hypotheses(a: SideFacts, b: SideFacts) -> str | None:
    """What might explain the figures, from the engines' counters and the sampled queues:
    not measured causes (attribution by ablation would measure them), said for any outcome."""
    causes = []
    hits_a = a.counters.get("prefix_cache_hit_rate") or 0.0
    hits_b = b.counters.get("prefix_cache_hit_rate") or 0.0
    for side, mine, other, theirs in ((a, hits_a, b, hits_b), (b, hits_b, a, hits_a)):
        if mine and theirs < mine / 2:
            causes.append(
                f"{side.name} served {mine:.0%} of prompt tokens from its prefix cache and "
                f"{other.name} {theirs:.0%}, so {other.name} spends more time in prefill, which "
                "is what TTFT waits for"
            )
    states = [s.queue_state() for s in (a, b)]
    if all(states):
        waiting = max(s["max_waiting"] for s in states)
        kv = max((s["max_kv_usage"] or 0.0) for s in states)
        if waiting < LIGHT_QUEUE and kv < LIGHT_KV:
            causes.append(
                f"queues stayed short (at most {waiting:.0f} waiting on one replica) and KV "
                f"usage low (peak {kv:.0%}): routing by queue depth and an elastic KV cache "
                "only pay off when queues form and KV runs short"
            )
    pre_a, pre_b = a.counters.get("preemptions", 0.0), b.counters.get("preemptions", 0.0)
    if pre_a != pre_b:
        causes.append(
            f"{a.name} preempted {pre_a:.0f} requests and {b.name} {pre_b:.0f} (KV ran out)"
        )
    if not causes:
        return None
    return (
        "possible reasons (hypotheses from counters and queues, not measured): "
        + "; ".join(causes)
        + "."
    )


def observations(diffs: Sequence[Difference], a: SideFacts, b: SideFacts) -> list[str]:
    """Facts that explain the verdict: load, queues, KV pressure, per-model tails, lag."""
    notes: list[str] = []
    guess = hypotheses(a, b)
    if guess is not None:
        notes.append(guess)
    by_name = {d.figure: d for d in diffs}
    for side in (a, b):
        if side.lag_p99_s > LAG_BUDGET_S:
            notes.append(
                f"{side.name}: generator lag p99 {side.lag_p99_s * 1000:.1f} ms exceeds "
                f"{LAG_BUDGET_S * 1000:g} ms, so "
                "its figures describe the load generator too; lower the rate."
            )
        if side.read_delay_p99_s > LAG_BUDGET_S:
            notes.append(
                f"{side.name}: generator read delay p99 {side.read_delay_p99_s * 1000:.1f} ms "
                f"exceeds {LAG_BUDGET_S * 1000:g} ms: chunks waited for the client before "
                "being timed, so its TTFT and ITL include the client; lower the rate."
            )
    for side in (a, b):
        state = side.queue_state()
        if not state:
            continue
        kv = state["max_kv_usage"]
        kv_text = f", peak KV usage {kv:.0%}" if kv is not None else ""
        notes.append(
            f"{side.name}: {state['mean_waiting_total']:.1f} requests waiting on average over "
            f"all replicas, at most {state['max_waiting']:.0f} on one; busiest "
            f"{state['busiest_replica']} ({state['busiest_mean_waiting']:.1f} waiting on "
            f"average){kv_text}; spread of requests over replicas (CV) "
            f"{_cv(side.replica_cv)}."
        )
    states = [s.queue_state() for s in (a, b)]
    if all(states) and max(s["max_waiting"] for s in states) < 1:
        notes.append(
            "no replica ever had a queue: the fleet was not loaded enough for routing or KV "
            "management to matter; raise --rate to compare under load."
        )
    models_a, models_b = a.ttft_p99_by_model(), b.ttft_p99_by_model()
    shared = [m for m in models_a if m in models_b]
    if shared:
        moves = sorted(shared, key=lambda m: models_b[m] - models_a[m])
        parts = [f"{m.split('/')[-1]} {_ms(models_a[m])} -> {_ms(models_b[m])}" for m in moves]
        notes.append(f"TTFT p99 by model ({a.name} -> {b.name}): " + ", ".join(parts) + ".")
    if a.counters or b.counters:
        notes.append(_engine_note(a, b))
    errors = by_name.get("error_rate")
    if errors is not None and (errors.a > 0 or errors.b > 0):
        notes.append(f"error rate {errors.a:.1%} ({a.name}) vs {errors.b:.1%} ({b.name}).")
    if a.goodput_fraction is not None and b.goodput_fraction is not None:
        notes.append(
            f"share of requests meeting the SLO: {a.goodput_fraction:.1%} ({a.name}) vs "
            f"{b.goodput_fraction:.1%} ({b.name})."
        )
    return notes


def _cv(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _engine_note(a: SideFacts, b: SideFacts) -> str:
    def hits(side: SideFacts) -> str:
        rate = side.counters.get("prefix_cache_hit_rate")
        return "prefix caching off or unused" if rate is None else f"{rate:.0%} prefix-cache hits"

    def preempted(side: SideFacts) -> str:
        return f"{side.counters.get('preemptions', 0):.0f} preemptions"

    return (
        f"engines: {a.name} {hits(a)}, {preempted(a)}; {b.name} {hits(b)}, {preempted(b)} "
        "(prefix-cache hits save prefill time and so TTFT; preemptions mean KV ran out)."
    )
