from loadtest.analysis.stats import Difference
from loadtest.analysis.verdict import SideFacts, observations, verdict
from loadtest.drive.records import RequestRecord
from loadtest.environments.sampler import ReplicaSample


def diff(figure: str, a: float, b: float, low: float, high: float, tail: int = 50) -> Difference:
    better = "higher" if figure.endswith("rps") else "lower"
    quantile = figure.split("_")[1].startswith("p")
    return Difference(figure, a, b, b - a, low, high, better, tail=tail if quantile else None)  # type: ignore[arg-type]


NO_ERRORS = diff("error_rate", 0.0, 0.0, 0.0, 0.0)
A_FASTER = diff("ttft_p99_s", 1.0, 1.5, 0.2, 0.8)
SAME_GOODPUT = diff("goodput_rps", 5.0, 5.0, -0.1, 0.1)


def test_verdict_names_the_side_better_on_both_figures() -> None:
    found = verdict(
        [
            diff("ttft_p99_s", 2.0, 1.0, -1.2, -0.8),
            diff("goodput_rps", 5.0, 6.0, 0.5, 1.5),
            NO_ERRORS,
        ],
        "baseline",
        "managed",
    )
    assert found.better == "managed"
    assert found.line.startswith("managed is better on TTFT p99 and goodput")
    assert "2000 ms -> 1000 ms" in found.line and "-50%" in found.line
    assert found.decided_by == ("ttft_p99_s", "goodput_rps")


def test_no_difference_and_no_other_figure_quoted_instead() -> None:
    found = verdict(
        [
            diff("ttft_p99_s", 2.0, 1.9, -0.3, 0.2),
            diff("goodput_rps", 5.0, 5.1, -0.2, 0.4),
            diff("ttft_p50_s", 0.080, 0.090, 0.005, 0.015),  # significant, but not a key figure
            NO_ERRORS,
        ],
        "a",
        "b",
    )
    assert found.better is None
    assert found.line.startswith("no difference between a and b beyond noise and the 5%")
    assert "TTFT p50" not in found.line and "but" not in found.line


def test_an_effect_below_the_minimum_names_no_side() -> None:
    small = diff("ttft_p99_s", 1.0, 1.03, 0.01, 0.05)  # significant, 3%
    found = verdict([small, diff("goodput_rps", 5.0, 5.0, -0.1, 0.1), NO_ERRORS], "a", "b")
    assert found.better is None


def test_one_figure_a_split_and_errors_first() -> None:
    found = verdict(
        [
            diff("ttft_p99_s", 1.0, 1.5, 0.2, 0.8),
            diff("goodput_rps", 5.0, 5.0, -0.1, 0.1),
            NO_ERRORS,
        ],
        "a",
        "b",
    )
    assert found.better == "a"
    assert "a is better on TTFT p99 (goodput: no difference beyond noise)" in found.line
    split = verdict(
        [
            diff("ttft_p99_s", 1.0, 1.5, 0.2, 0.8),
            diff("goodput_rps", 5.0, 6.0, 0.5, 1.5),
            NO_ERRORS,
        ],
        "a",
        "b",
    )
    assert split.better is None and split.line.startswith("mixed: a is better on TTFT p99, b on")
    failing = verdict(
        [
            diff("ttft_p99_s", 1.0, 0.5, -0.6, -0.4),  # b looks faster...
            diff("goodput_rps", 5.0, 5.0, -0.1, 0.1),
            diff("error_rate", 0.001, 0.05, 0.03, 0.07),  # ... but fails 5% of its requests
        ],
        "a",
        "b",
    )
    assert failing.better == "a" and "fails fewer requests" in failing.line


def test_a_p99_resting_on_few_requests_decides_nothing_and_says_so() -> None:
    thin = diff("ttft_p99_s", 1.0, 2.0, 0.5, 1.5, tail=4)
    found = verdict([thin, diff("goodput_rps", 5.0, 5.0, -0.1, 0.1), NO_ERRORS], "a", "b")
    assert found.better is None
    assert "rests on 4 requests beyond it" in found.line


def test_cautions_mean_no_winner() -> None:
    found = verdict(
        [
            diff("ttft_p99_s", 2.0, 1.0, -1.2, -0.8),
            diff("goodput_rps", 5.0, 6.0, 0.5, 1.5),
            NO_ERRORS,
        ],
        "a",
        "b",
        cautions=["the generator sent b's run 1 late"],
    )
    assert found.better is None and found.line.startswith("no winner named: the generator sent")


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


def test_hypotheses_are_labelled_so_and_given_for_either_outcome() -> None:
    light = [ReplicaSample(float(t), "r0", 1.0, 4.0, 0.1) for t in range(5)]
    recs = [record(i, "m", 0.1) for i in range(10)]
    a = SideFacts("baseline", recs, light, 0.001, 0.1, counters={"prefix_cache_hit_rate": 0.15})
    b = SideFacts("managed", recs, light, 0.001, 0.1, counters={"preemptions": 0.0})
    for ttft in (
        diff("ttft_p99_s", 0.5, 0.6, 0.01, 0.2),  # managed worse
        diff("ttft_p99_s", 0.6, 0.5, -0.2, -0.01),  # managed better
    ):
        guess = observations([ttft, diff("goodput_rps", 9.0, 9.0, 0.0, 0.0)], a, b)[0]
        assert guess.startswith("possible reasons (hypotheses from counters and queues, not")
        assert "baseline served 15% of prompt tokens from its prefix cache and managed 0%" in guess
        assert "queues stayed short (at most 1 waiting on one replica)" in guess
        assert "peak 10%" in guess
