"""The virtual-time fleet runner with the gateway's own strategies."""

from collections import Counter
from collections.abc import Sequence

import pytest

from loadtest.sim.engine import EngineConfig
from loadtest.sim.engines import VirtualReplica, deployed_replicas
from loadtest.sim.layout import DEPLOYMENTS, FLEETS
from loadtest.sim.virtual import VirtualRequest, run_virtual
from routers.queue_depth import QueueDepth
from routers.round_robin import RoundRobin
from routers.types import Outcome, ReplicaView, RouteRequest, StrategyBase

CONFIG = EngineConfig(max_num_seqs=8, max_num_batched_tokens=256)


def tiny_fleet(count: int, **overrides: object) -> list[VirtualReplica]:
    fields: dict[str, object] = {"profile": "tiny", "config": CONFIG, "model": "m"}
    fields.update(overrides)
    return [VirtualReplica(name=f"r{index}", **fields) for index in range(count)]  # type: ignore[arg-type]


def steady(count: int, gap: float, model: str = "m") -> list[VirtualRequest]:
    return [
        VirtualRequest(
            time=index * gap,
            model=model,
            prompt_token_ids=list(range(index * 1000, index * 1000 + 20 + index % 50)),
            max_tokens=5 + index % 20,
            ignore_eos=True,
        )
        for index in range(count)
    ]


def test_round_robin_rotates_exactly_and_every_request_finishes() -> None:
    arrivals = steady(300, 0.002)
    result = run_virtual(tiny_fleet(3), RoundRobin(), arrivals)
    assert [record.replica for record in result.records[:6]] == ["r0", "r1", "r2"] * 2
    assert Counter(record.replica for record in result.records) == {"r0": 100, "r1": 100, "r2": 100}
    for record, arrival in zip(result.records, arrivals, strict=True):
        assert record.status == "ok" and record.finish_reason == "length"
        assert record.output_tokens == arrival.max_tokens
        assert record.prompt_tokens == len(arrival.prompt_token_ids)
        assert record.ttft is not None and record.e2e is not None and record.mean_itl is not None
        assert 0 < record.ttft < record.e2e
    assert result.steps > 0 and result.sim_seconds >= 299 * 0.002


def test_queue_depth_finishes_every_request() -> None:
    result = run_virtual(tiny_fleet(3), QueueDepth(seed=3), steady(300, 0.001))
    assert all(record.status == "ok" for record in result.records)
    assert all(record.output_tokens > 0 for record in result.records)


def test_queue_depth_credits_dispatches_since_the_scrape_so_a_burst_does_not_herd() -> None:
    burst = [
        VirtualRequest(0.5, "m", list(range(i * 100, i * 100 + 30)), 50, True) for i in range(60)
    ]
    result = run_virtual(tiny_fleet(3), QueueDepth(seed=1), burst, poll_interval=1.0)
    assert Counter(record.replica for record in result.records) == {"r0": 20, "r1": 20, "r2": 20}


def test_requests_are_routed_only_to_replicas_of_their_model() -> None:
    fleet = [*tiny_fleet(2), VirtualReplica("other", "tiny", CONFIG, model="n")]
    arrivals = sorted(
        steady(20, 0.01) + steady(10, 0.02, "n") + steady(3, 0.05, "x"), key=lambda a: a.time
    )
    records = run_virtual(fleet, RoundRobin(), arrivals).records
    assert {r.replica for r in records if r.model == "n"} == {"other"}
    assert {r.replica for r in records if r.model == "m"} == {"r0", "r1"}
    assert [r.status for r in records if r.model == "x"] == ["no_replica"] * 3


def test_elastic_replicas_share_one_pool_and_finish() -> None:
    config = EngineConfig(max_num_seqs=8, max_num_batched_tokens=256, kv_mode="elastic")
    fleet = tiny_fleet(2, config=config, pool="gpu0")
    result = run_virtual(fleet, RoundRobin(), steady(200, 0.001))
    assert all(record.status == "ok" for record in result.records)


def test_too_long_prompts_are_recorded_as_rejected() -> None:
    arrivals = [VirtualRequest(0.0, "m", list(range(5000)))]
    assert run_virtual(tiny_fleet(1), RoundRobin(), arrivals).records[0].status == "rejected"


def test_arrivals_must_come_in_time_order() -> None:
    with pytest.raises(ValueError, match="time order"):
        run_virtual(tiny_fleet(1), RoundRobin(), list(reversed(steady(3, 0.1))))


@pytest.mark.parametrize("fleet", [f for f in FLEETS if DEPLOYMENTS[f].layout == "reference"])
def test_the_reference_fleets_serve_their_three_models(fleet: str) -> None:
    specs = deployed_replicas(fleet)
    models = ["meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-7B-Instruct"]
    models.append("mistralai/Mixtral-8x7B-Instruct-v0.1")
    arrivals = [
        VirtualRequest(i * 0.01, models[i % 3], list(range(i * 1000, i * 1000 + 300)), 20, True)
        for i in range(30)
    ]
    records = run_virtual(specs, RoundRobin(), arrivals).records
    assert all(record.status == "ok" for record in records)
    assert len({record.replica for record in records}) == 6
    deployed = DEPLOYMENTS[fleet]
    assert {(spec.config.kv_mode, spec.config.prefix_caching) for spec in specs} == {
        (deployed.kv_mode, deployed.prefix_caching)
    }
    assert all((spec.pool is not None) == deployed.elastic for spec in specs)


def test_managed_prefix_reuses_a_system_prompt_that_managed_recomputes() -> None:
    """One at a time (each finishes before the next): only kept freed blocks can hit."""
    system = list(range(100_000, 102_000))
    arrivals = [
        VirtualRequest(
            i * 2.0,
            "meta-llama/Llama-3.1-8B-Instruct",
            [*system, *range(i * 100, i * 100 + 50)],
            4,
            True,
        )
        for i in range(6)
    ]
    ttft = {}
    for fleet in ("managed", "managed-prefix"):
        records = run_virtual(deployed_replicas(fleet), RoundRobin(), arrivals).records
        assert all(record.status == "ok" and record.e2e is not None for record in records)
        assert all(record.e2e < 2.0 for record in records)  # type: ignore[operator]
        later = [record.ttft for record in records[2:]]  # both Llama replicas served one
        ttft[fleet] = sum(later) / len(later)  # type: ignore[arg-type]
    assert ttft["managed-prefix"] < 0.5 * ttft["managed"], ttft


class Recorder(StrategyBase):
    """Always picks the first candidate and keeps every view it was shown."""

    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[ReplicaView] = []
        self.times: list[float | None] = []

    def choose(self, request: RouteRequest, candidates: Sequence[ReplicaView]) -> ReplicaView:
        self.seen.append(candidates[0])
        self.times.append(request.now)
        return candidates[0]


def test_requests_carry_the_virtual_time_they_are_routed_at() -> None:
    arrivals = [VirtualRequest(t, "m", list(range(20)), 5, True) for t in (0.25, 0.5, 3.0)]
    recorder = Recorder()
    run_virtual(tiny_fleet(1), recorder, arrivals, poll_interval=1.0)
    assert recorder.times == [0.25, 0.5, 3.0]


def test_views_carry_scrape_age_dispatches_since_the_scrape_and_in_flight() -> None:
    # tiny decodes ~1,600 tokens/s per request: 2,000 tokens outlast the scrape at 1.0.
    arrivals = [VirtualRequest(t, "m", list(range(200)), 2000, True) for t in (0.2, 0.4, 1.3, 5.5)]
    recorder = Recorder()
    run_virtual(tiny_fleet(1), recorder, arrivals, poll_interval=1.0, stale_after=2.0)
    first, second, third, fourth = recorder.seen
    assert first.metrics is not None and first.metrics.waiting == 0
    assert (first.metrics_age, first.dispatched_since_scrape, first.in_flight) == (
        pytest.approx(0.2),
        0,
        0,
    )
    assert (second.dispatched_since_scrape, second.in_flight) == (1, 1)
    assert second.metrics is not None and second.metrics.running == 0  # scraped at 0: stale
    # Scraped at 1.0: both requests seen running, and the local credit starts over.
    assert third.metrics is not None and third.metrics.running == 2
    assert third.metrics_age == pytest.approx(0.3) and third.dispatched_since_scrape == 0
    assert not third.metrics_stale and third.in_flight == 2
    assert fourth.metrics_age == pytest.approx(0.5) and not fourth.metrics_stale
    assert fourth.in_flight == 0  # the first three finished in between


def test_scrapes_older_than_stale_after_are_marked_stale() -> None:
    arrivals = [VirtualRequest(t, "m", list(range(20)), 5, True) for t in (0.1, 0.3)]
    recorder = Recorder()
    run_virtual(tiny_fleet(1), recorder, arrivals, poll_interval=1.0, stale_after=0.2)
    assert [view.metrics_stale for view in recorder.seen] == [False, True]


class Everything(StrategyBase):
    """Keeps every candidate list it was shown and every hook it heard."""

    name = "everything"

    def __init__(self) -> None:
        self.shown: list[tuple[float, list[ReplicaView]]] = []
        self.hooks: list[tuple[str, object]] = []

    def choose(self, request: RouteRequest, candidates: Sequence[ReplicaView]) -> ReplicaView:
        self.shown.append((request.prompt_tokens_estimate, list(candidates)))
        return candidates[-1]

    def on_replica_added(self, replica_id: str) -> None:
        self.hooks.append(("added", replica_id))

    def on_request_finished(self, request: RouteRequest, outcome: Outcome) -> None:
        self.hooks.append(("finished", outcome))


def test_scrapes_are_staggered_over_the_interval_like_the_pollers() -> None:
    # Four replicas, 1 s polls: replica i is first scraped at i/4 s, then every second.
    probes = [VirtualRequest(t, "m", list(range(20)), 2, True) for t in (0.1, 0.3, 0.6, 0.9)]
    strategy = Everything()
    run_virtual(tiny_fleet(4), strategy, probes, poll_interval=1.0)
    scraped = [[view.metrics is not None for view in views] for _, views in strategy.shown]
    assert scraped == [
        [True, False, False, False],
        [True, True, False, False],
        [True, True, True, False],
        [True, True, True, True],
    ]
    # Candidates come in the pool's order (by name), whatever the spec order.
    assert [view.id for view in strategy.shown[0][1]] == ["r0", "r1", "r2", "r3"]


def test_a_slow_scrape_keeps_crediting_what_was_sent_while_it_ran() -> None:
    # One replica, scrape at 0 taking 0.3 s: a request sent at 0.1 stays credited after it.
    arrivals = [VirtualRequest(t, "m", list(range(20)), 2000, True) for t in (0.1, 0.5)]
    strategy = Everything()
    run_virtual(tiny_fleet(1), strategy, arrivals, poll_interval=1.0, scrape_latency=0.3)
    first, second = (views[0] for _, views in strategy.shown)
    assert first.metrics is None  # the scrape that began at 0 has not ended at 0.1
    assert second.metrics is not None and second.metrics.running == 0  # read at 0
    assert second.dispatched_since_scrape == 1 and second.in_flight == 1


def test_failed_scrapes_leave_metrics_stale() -> None:
    arrivals = [VirtualRequest(t, "m", list(range(20)), 5, True) for t in (0.5, 1.5, 2.5)]
    strategy = Everything()
    run_virtual(
        tiny_fleet(1),
        strategy,
        arrivals,
        poll_interval=1.0,
        scrape_fails=lambda replica, at: at >= 1.0,
    )
    stale = [views[0].metrics_stale for _, views in strategy.shown]
    assert stale == [False, True, True]
    assert strategy.shown[1][1][0].metrics is not None  # the old values stay, marked stale


def test_hooks_are_the_gateways_added_first_then_finished_with_time_to_first_byte() -> None:
    arrivals = [
        VirtualRequest(0.0, "m", list(range(40)), 5, True),
        VirtualRequest(0.1, "m", list(range(5000)), 5, True),  # longer than tiny's context
    ]
    strategy = Everything()
    result = run_virtual(tiny_fleet(2), strategy, arrivals)
    assert strategy.hooks[:2] == [("added", "r0"), ("added", "r1")]
    finished = [outcome for kind, outcome in strategy.hooks if kind == "finished"]
    assert len(finished) == 2
    rejected, served = sorted(finished, key=lambda o: o.ok)  # type: ignore[attr-defined]
    assert rejected == Outcome("r1", False, None)
    assert served.replica_id == "r1" and served.ok  # type: ignore[attr-defined]
    assert served.ttfb_s == pytest.approx(result.records[0].ttft)  # type: ignore[attr-defined]
    assert [r.status for r in result.records] == ["ok", "rejected"]
    assert [size for size, _ in strategy.shown] == [40, 5000]


def in_flight_peak(records: Sequence[object]) -> int:
    """The most requests in flight at once, from arrival and end times."""
    events = []
    for record in records:
        events.append((record.arrival, 1))  # type: ignore[attr-defined]
        events.append((record.arrival + record.e2e, -1))  # type: ignore[attr-defined]
    peak = current = 0
    for _, change in sorted(events, key=lambda e: (e[0], e[1])):
        current += change
        peak = max(peak, current)
    return peak


def test_a_closed_loop_keeps_its_concurrency_and_sends_each_next_request_as_one_ends() -> None:
    templates = steady(60, 100.0)  # their times are ignored in a closed loop
    result = run_virtual(tiny_fleet(2), RoundRobin(), templates, concurrency=4)
    records = result.records
    assert len(records) == 60 and all(r.status == "ok" for r in records)
    assert sum(r.arrival == 0.0 for r in records) == 4  # four at once, then one per answer
    assert in_flight_peak(records) == 4
    ends = sorted(round(r.arrival + (r.e2e or 0.0), 9) for r in records)
    for record in records[4:]:
        assert round(record.arrival, 9) in ends  # sent at the instant an answer ended
    assert result.sim_seconds < 60 * 100.0 / 10  # not the open loop's 100 s gaps


def test_a_closed_loop_stops_sending_after_its_duration_and_refusals_free_their_slot() -> None:
    templates = steady(1000, 0.0)
    result = run_virtual(
        tiny_fleet(1), RoundRobin(), templates, concurrency=2, stop_sending_after=0.05
    )
    assert 2 < len(result.records) < 1000
    assert max(r.arrival for r in result.records) <= 0.05
    # Requests for a model nobody serves are answered at once, and the loop goes on.
    lost = [VirtualRequest(0.0, "nobody", [1, 2, 3], max_tokens=2) for _ in range(5)]
    lost_result = run_virtual(tiny_fleet(1), RoundRobin(), lost, concurrency=1)
    assert [r.status for r in lost_result.records] == ["no_replica"] * 5
    with pytest.raises(ValueError, match="concurrency must be at least 1"):
        run_virtual(tiny_fleet(1), RoundRobin(), lost, concurrency=0)


def test_the_reference_layout_runs_on_other_hardware_in_virtual_time() -> None:
    from loadtest.sim.layout import on_hardware

    remap = on_hardware("b200", "fp4")
    moved = deployed_replicas("baseline", remap=remap)
    assert [r.profile for r in moved] == [
        "llama-3.1-8b-fp4-b200",
        "llama-3.1-8b-fp4-b200",
        "qwen2.5-7b-fp4-b200",
        "qwen2.5-7b-fp4-b200",
        "mixtral-8x7b-fp4-b200-tp2",
        "mixtral-8x7b-fp4-b200-tp2",
    ]
    model = "meta-llama/Llama-3.1-8B-Instruct"
    arrivals = [
        VirtualRequest(i * 0.01, model, list(range(i * 999, i * 999 + 500)), max_tokens=100)
        for i in range(40)
    ]
    fast = run_virtual(moved, RoundRobin(), arrivals)
    slow = run_virtual(deployed_replicas("baseline"), RoundRobin(), arrivals)
    # Same requests, same layout: the B200 decodes them faster than the H100.
    mean = [sum(r.mean_itl or 0.0 for r in run.records) / len(run.records) for run in (fast, slow)]
    assert mean[0] < 0.6 * mean[1]


def test_views_carry_when_the_last_step_ended_and_how_long_decode_steps_take() -> None:
    # The relay sees a stream's chunk at each step's end; here the runner stands in for it.
    prompt = list(range(200))
    arrivals = [
        VirtualRequest(t, "m", prompt, n, True) for t, n in ((0.2, 2000), (0.5, 5), (0.8, 5))
    ]
    recorder = Recorder()
    # A 7B model's decode steps (several ms): tiny's are under the 2 ms that part steps.
    result = run_virtual(tiny_fleet(1, profile="qwen2.5-7b-h100"), recorder, arrivals)
    assert recorder.seen[0].step_ends_at == 0.0
    itl = result.records[0].mean_itl
    assert itl is not None and itl > 0
    # Each later arrival comes during a decode step; the pool has learned its length, so
    # the step should end within one such length from now.
    for view, now in zip(recorder.seen[1:], recorder.times[1:], strict=True):
        assert now is not None
        assert 0 <= view.step_ends_at - now <= 1.3 * itl
