from dataclasses import replace

import pytest

from loadtest.analysis.stats import Difference
from loadtest.analysis.verdict import SideFacts, observations, verdict
from loadtest.compare.live import common_window, judged_workload
from loadtest.drive.records import RequestRecord
from loadtest.environments.catalog import Environment
from loadtest.environments.sampler import ReplicaSample
from loadtest.workload import Slo, load_workload


def diff(figure: str, a: float, b: float, low: float, high: float) -> Difference:
    better = "higher" if figure.endswith("rps") else "lower"
    return Difference(figure, a, b, b - a, low, high, better)  # type: ignore[arg-type]


def test_verdict_names_the_side_better_on_both_figures() -> None:
    line, best = verdict(
        [diff("ttft_p99_s", 2.0, 1.0, -1.2, -0.8), diff("goodput_rps", 5.0, 6.0, 0.5, 1.5)],
        "baseline",
        "managed",
    )
    assert best == "managed"
    assert line.startswith("managed is better on TTFT p99 and goodput")
    assert "2000 ms -> 1000 ms" in line and "-50%" in line


def test_verdict_when_nothing_is_significant() -> None:
    line, best = verdict(
        [diff("ttft_p99_s", 2.0, 1.9, -0.3, 0.2), diff("goodput_rps", 5.0, 5.1, -0.2, 0.4)],
        "a",
        "b",
    )
    assert best is None
    assert line.startswith("no significant difference between a and b on TTFT p99 or goodput")
    assert "but" not in line
    line, _ = verdict(
        [
            diff("ttft_p99_s", 2.0, 1.9, -0.3, 0.2),
            diff("goodput_rps", 5.0, 5.1, -0.2, 0.4),
            diff("ttft_p50_s", 0.080, 0.090, 0.005, 0.015),
        ],
        "a",
        "b",
    )
    assert line.endswith("but a is better on TTFT p50 80 ms -> 90 ms (95% CI +5 .. +15 ms)")


def test_verdict_with_one_significant_figure_or_a_split() -> None:
    line, best = verdict(
        [diff("ttft_p99_s", 1.0, 1.5, 0.2, 0.8), diff("goodput_rps", 5.0, 5.0, -0.1, 0.1)],
        "a",
        "b",
    )
    assert best == "a"
    assert "a is better on TTFT p99 (goodput not significantly different)" in line
    line, best = verdict(
        [diff("ttft_p99_s", 1.0, 1.5, 0.2, 0.8), diff("goodput_rps", 5.0, 6.0, 0.5, 1.5)],
        "a",
        "b",
    )
    assert best is None
    assert line.startswith("mixed: a is better on TTFT p99, b on goodput")


def record(i: int, model: str, ttft: float) -> RequestRecord:
    return RequestRecord(i, model, i * 0.1, i * 0.1, 0.0, 200, ttft_s=ttft, itl_s=(0.01,))


def test_observations_explain_an_idle_fleet_and_per_model_tails() -> None:
    idle = [ReplicaSample(float(t), "r0", 0.0, 1.0, 0.05) for t in range(5)]
    a = SideFacts("baseline", [record(i, "org/m1", 0.1) for i in range(50)], idle, 0.001, 0.1)
    b = SideFacts(
        "managed",
        [record(i, "org/m1", 0.3) for i in range(50)],
        idle,
        0.009,
        0.2,
        counters={"preemptions": 0.0},
    )
    notes = observations([diff("error_rate", 0.0, 0.0, 0.0, 0.0)], a, b)
    text = "\n".join(notes)
    assert "managed: generator lag p99 9.0 ms exceeds 5 ms" in text
    assert "baseline: generator lag" not in text
    assert "fleet was not loaded enough" in text
    assert "m1 100 ms -> 300 ms" in text
    assert "managed prefix caching off or unused, 0 preemptions" in text


def test_observations_report_queues_and_kv_pressure() -> None:
    busy = [
        ReplicaSample(float(t), f"r{r}", float(3 * r), 8.0, 0.5 + 0.2 * r)
        for t in range(4)
        for r in range(2)
    ]
    a = SideFacts("a", [record(0, "m", 0.1)], busy, 0.001, 0.3)
    text = "\n".join(observations([], a, a))
    assert "3.0 requests waiting on average over all replicas, at most 3 on one" in text
    assert "busiest r1" in text and "peak KV usage 70%" in text
    assert "not loaded enough" not in text


def env(scale: float | None, url: str | None = None) -> Environment:
    if url:
        return Environment("u", url=url)
    return Environment("e", fleet="baseline", time_scale=scale)


def test_slo_targets_scale_with_a_common_time_scale() -> None:
    workload = replace(load_workload("chat-mixed"), slo=Slo(ttft_s=1.0, tpot_s=0.1))
    scaled = judged_workload(workload, env(10), env(10))
    assert scaled.slo == Slo(ttft_s=pytest.approx(10.0), tpot_s=pytest.approx(1.0))
    assert judged_workload(workload, env(10), env(5)).slo == workload.slo
    assert judged_workload(workload, env(None, "http://x"), env(None, "http://y")) is workload


def test_rates_share_the_schedule_span() -> None:
    measured = [record(i, "m", 0.1) for i in range(11)]  # scheduled 0.0 .. 1.0 s
    assert common_window(measured, 30.0, 40.0) == pytest.approx(1.0)
    closed = [replace(r, scheduled_s=0.0) for r in measured]
    assert common_window(closed, 30.0, 40.0) == pytest.approx(35.0)


def test_when_b_is_not_better_the_observations_say_why() -> None:
    light = [ReplicaSample(float(t), "r0", 1.0, 4.0, 0.1) for t in range(5)]
    recs = [record(i, "m", 0.1) for i in range(10)]
    a = SideFacts("baseline", recs, light, 0.001, 0.1, counters={"prefix_cache_hit_rate": 0.15})
    b = SideFacts("managed", recs, light, 0.001, 0.1, counters={"preemptions": 0.0})
    worse = [diff("ttft_p99_s", 0.5, 0.6, 0.01, 0.2), diff("goodput_rps", 9.0, 9.0, 0.0, 0.0)]
    why = observations(worse, a, b)[0]
    assert why.startswith("why managed is not better: baseline served 15% of prompt tokens")
    assert "queues stayed short (at most 1 waiting on one replica)" in why
    assert "peak 10%" in why
    better = [diff("ttft_p99_s", 0.6, 0.5, -0.2, -0.01), diff("goodput_rps", 9.0, 9.0, 0.0, 0.0)]
    assert not any(n.startswith("why") for n in observations(better, a, b))


def test_one_tokenizer_per_model_for_both_sides() -> None:
    from loadtest.environments.catalog import EnvironmentsError, common_tokenizer
    from loadtest.workload.counting import TokenizerChoice

    a = Environment("a", url="http://h:1", tokenizer={"m1": "tok-a"})
    b = Environment("b", url="http://h:2", tokenizer={"m2": "tok-b"})
    choice = common_tokenizer(TokenizerChoice(), a, b, ["m1", "m2"])
    assert (choice.name_for("m1"), choice.name_for("m2")) == ("tok-a", "tok-b")
    clash = Environment("c", url="http://h:3", tokenizer="tok-c")
    with pytest.raises(EnvironmentsError, match="different tokenizers for m1"):
        common_tokenizer(TokenizerChoice(), a, clash, ["m1"])
    # --tokenizer settles it; a local fleet names none.
    given = common_tokenizer(TokenizerChoice("tok-x"), a, clash, ["m1"])
    assert given.name_for("m1") == "tok-x"
    local = Environment("local", fleet="baseline")
    assert common_tokenizer(TokenizerChoice(), local, local, ["m1"]).given is False
