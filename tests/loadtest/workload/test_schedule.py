"""Schedules are reproducible from the seed and follow their distributions (fixed seeds)."""

from dataclasses import replace

import numpy as np
import pytest

from loadtest.sim.tokenizer import encode_chat
from loadtest.workload import Arrival, LengthDist, Phase, SharedPrefix, Workload, WorkloadError
from loadtest.workload.schedule import build_schedule


def workload(**changes: object) -> Workload:
    base = Workload(
        name="t",
        description="",
        models=(("a", 0.4), ("b", 0.4), ("c", 0.2)),
        prompt_tokens=LengthDist("lognormal", median=200, spread=0.8),
        output_tokens=LengthDist("uniform", low=10, high=50),
        arrival=Arrival("poisson", rate=50.0),
        requests=5000,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_same_seed_same_schedule_other_seed_another() -> None:
    w = workload(shared_prefix=SharedPrefix(fraction=0.5, tokens=32, groups=2), requests=300)
    first, again = build_schedule(w, seed=7), build_schedule(w, seed=7)
    assert first == again
    assert [first.prompt(r) for r in first.requests] == [again.prompt(r) for r in again.requests]
    other = build_schedule(w, seed=8)
    assert [r.at_s for r in other.requests] != [r.at_s for r in first.requests]
    assert [first.prompt(r) for r in first.requests[:5]] != [
        other.prompt(r) for r in other.requests[:5]
    ]


def test_rate_override_changes_send_times_only() -> None:
    w = workload(requests=200)
    slow, fast = build_schedule(w, seed=1, rate=5), build_schedule(w, seed=1, rate=500)
    assert [r.at_s for r in slow.requests] != [r.at_s for r in fast.requests]
    strip = [replace(r, at_s=0.0) for r in slow.requests]
    assert strip == [replace(r, at_s=0.0) for r in fast.requests]


def test_poisson_mean_rate_and_exponential_gaps() -> None:
    s = build_schedule(workload(requests=20000), seed=3)
    at = np.array([r.at_s for r in s.requests])
    assert at[0] == 0.0
    assert np.all(np.diff(at) >= 0)
    gaps = np.diff(at)
    assert (len(at) - 1) / at[-1] == pytest.approx(50.0, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)


def test_gamma_burstiness_sets_the_variation_and_keeps_the_rate() -> None:
    s = build_schedule(workload(arrival=Arrival("gamma", rate=20.0, burstiness=0.25)), seed=3)
    gaps = np.diff([r.at_s for r in s.requests])
    assert 1 / gaps.mean() == pytest.approx(20.0, rel=0.08)
    assert gaps.std() / gaps.mean() == pytest.approx(2.0, rel=0.1)  # CV = 1/sqrt(shape)


def test_constant_and_bursts() -> None:
    s = build_schedule(workload(arrival=Arrival("constant", rate=4.0), requests=9), seed=0)
    assert [r.at_s for r in s.requests] == pytest.approx([i * 0.25 for i in range(9)])
    bursts = Arrival("bursts", rate=5.0, burst_size=5, burst_interval_s=1.0)
    s = build_schedule(workload(arrival=bursts, requests=12), seed=0)
    assert [r.at_s for r in s.requests] == [0.0] * 5 + [1.0] * 5 + [2.0] * 2


def test_duration_keeps_arrivals_inside_it() -> None:
    s = build_schedule(workload(requests=None, duration_s=30.0), seed=5)
    at = [r.at_s for r in s.requests]
    assert max(at) < 30.0
    assert len(at) == pytest.approx(1500, rel=0.08)
    assert build_schedule(workload(), seed=5, duration=2.0).requests[-1].at_s < 2.0


def test_model_mix_follows_the_shares() -> None:
    s = build_schedule(workload(requests=20000), seed=11)
    models = [r.model for r in s.requests]
    for name, share in (("a", 0.4), ("b", 0.4), ("c", 0.2)):
        assert models.count(name) / len(models) == pytest.approx(share, abs=0.015)


def test_phases_choose_each_requests_model_by_its_send_time() -> None:
    phases = (Phase(10.0, (("a", 1.0), ("b", 0.0))), Phase(5.0, (("b", 1.0),)))
    shifting = workload(models=(("a", 2 / 3), ("b", 1 / 3)), phases=phases, requests=None)
    schedule = build_schedule(shifting, seed=3, duration=60.0, rate=20.0)
    assert len(schedule.requests) > 1000
    for r in schedule.requests:  # the phases repeat every 15 s
        assert r.model == ("a" if r.at_s % 15.0 < 10.0 else "b"), (r.at_s, r.model)
    mixed = (Phase(10.0, (("a", 0.8), ("b", 0.2))), Phase(10.0, (("a", 0.2), ("b", 0.8))))
    schedule = build_schedule(replace(shifting, phases=mixed), seed=3, duration=200.0, rate=20.0)
    first = [r.model for r in schedule.requests if r.at_s % 20.0 < 10.0]
    assert 0.75 < first.count("a") / len(first) < 0.85
    second = [r.model for r in schedule.requests if r.at_s % 20.0 >= 10.0]
    assert 0.15 < second.count("a") / len(second) < 0.25


def test_phases_need_send_times() -> None:
    shifting = workload(phases=(Phase(10.0, (("a", 1.0),)),))
    with pytest.raises(WorkloadError, match=r"phases: .*needs an open-loop arrival"):
        build_schedule(shifting, concurrency=4, requests=10)


def test_length_distributions() -> None:
    s = build_schedule(workload(requests=20000), seed=2)
    prompts = np.array([r.prompt_tokens for r in s.requests])
    assert np.median(prompts) == pytest.approx(200, rel=0.04)
    assert np.log(prompts).std() == pytest.approx(0.8, rel=0.05)
    outputs = [r.max_tokens for r in s.requests]
    assert (min(outputs), max(outputs)) == (10, 50)
    assert np.mean(outputs) == pytest.approx(30, rel=0.02)

    clipped = LengthDist("lognormal", median=200, spread=2.0, low=50, high=400)
    empirical = LengthDist("empirical", values=(7, 70, 700))
    s = build_schedule(workload(prompt_tokens=clipped, output_tokens=empirical), seed=2)
    assert {r.prompt_tokens for r in s.requests} <= set(range(50, 401))
    assert {r.max_tokens for r in s.requests} == {7, 70, 700}


def test_prompts_have_the_target_token_count_and_shared_prefixes() -> None:
    shared = SharedPrefix(fraction=0.3, tokens=100, groups=3)
    s = build_schedule(workload(shared_prefix=shared, requests=3000), seed=4)
    members = [r for r in s.requests if r.prefix_group >= 0]
    assert len(members) / len(s.requests) == pytest.approx(0.3, abs=0.03)
    assert {r.prefix_group for r in members} == {0, 1, 2}
    for request in s.requests[:300]:
        text = s.prompt(request)
        # The server's count, chat template included (the approximate tokenizer's 9 tokens).
        assert len(encode_chat([{"role": "user", "content": text}])) == request.prompt_tokens
        if request.prefix_group >= 0:
            assert text.startswith(s.prefixes[request.prefix_group])
            assert request.prompt_tokens > 100
    # Outside the shared prefix, no two prompts start alike (no accidental cache hits).
    own = [s.prompt(r)[400 if r.prefix_group >= 0 else 0 :][:8] for r in s.requests]
    assert len(set(own)) == len(own)
    assert len({p[:400] for p in s.prefixes}) == 3


def test_concurrency_makes_a_closed_loop_schedule() -> None:
    s = build_schedule(workload(), seed=1, concurrency=4, requests=10)
    assert s.closed_loop and s.concurrency == 4
    assert len(s.requests) == 10
    assert "closed loop" in s.describe()
    timed = build_schedule(workload(), seed=1, concurrency=2, duration=3.0)
    assert timed.duration_s == 3.0
    assert len(timed.requests) >= 2 * 3 * 10


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 1.0, "concurrency": 2}, "rate or a concurrency"),
        ({"duration": 1.0, "requests": 2}, "duration or a request count"),
        ({"rate": 0.0}, "rate must be positive"),
    ],
)
def test_conflicting_overrides_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(WorkloadError, match=message):
        build_schedule(workload(), seed=0, **kwargs)  # type: ignore[arg-type]
