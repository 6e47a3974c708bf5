"""The oracle: it predicts from the engines' true state and routes to the soonest first token."""

import pytest

from loadtest.sim.engine import EngineConfig, EngineModel
from loadtest.sim.kvcache import block_hashes
from loadtest.sim.oracle import Oracle, predicted_ttft
from loadtest.sim.profiles import load_profile
from loadtest.sim.types import SimRequest
from loadtest.sim.virtual import VirtualReplica, VirtualRequest, run_virtual
from routers import RouteRequest
from routers.registry import load
from tests.routers.views import view

MODEL = "sim/tiny"


def engine() -> EngineModel:
    return EngineModel(load_profile("tiny"), EngineConfig(max_num_batched_tokens=512))


def test_a_queued_prompt_and_a_running_step_push_the_prediction_back() -> None:
    prompt = list(range(100, 300))
    hashes = block_hashes(prompt, 16)
    idle, _ = predicted_ttft(engine(), 0.0, hashes, len(prompt))
    busy_engine = engine()
    busy_engine.add(SimRequest(id="long", prompt_token_ids=list(range(5000, 7000))), 0.0)
    queued, _ = predicted_ttft(busy_engine, 0.0, hashes, len(prompt))
    still_running, _ = predicted_ttft(busy_engine, 0.25, hashes, len(prompt))
    assert idle < queued < still_running
    assert still_running == pytest.approx(queued + 0.25)


def test_a_cached_prefix_lowers_the_prediction() -> None:
    warm = engine()
    document = list(range(1000, 1480))
    warm.add(SimRequest(id="doc", prompt_token_ids=[*document, 1], max_tokens=1), 0.0)
    now = 0.0
    while warm.has_work():
        now += warm.step(now).duration
    prompt = [*document, 7, 8, 9]
    hashes = block_hashes(prompt, 16)
    cold_ttft, _ = predicted_ttft(engine(), 0.0, hashes, len(prompt))
    warm_ttft, _ = predicted_ttft(warm, 0.0, hashes, len(prompt))
    assert warm.cached_tokens(hashes, len(prompt)) == 480
    assert warm_ttft < cold_ttft


def test_the_oracle_routes_only_inside_the_virtual_runner() -> None:
    with pytest.raises(RuntimeError, match="run_virtual"):
        Oracle().choose(RouteRequest(model=MODEL), [view("a")])
    assert Oracle().choose(RouteRequest(model=MODEL), []) is None


def test_the_oracle_beats_round_robin_when_long_prompts_come_in_turn() -> None:
    # Every other arrival is a long prompt: round_robin sends all of them to one replica,
    # where they queue behind each other while the other idles on short ones; the oracle
    # sees both queues.
    replicas = [
        VirtualReplica(f"r{i}", "tiny", EngineConfig(max_num_batched_tokens=512)) for i in range(2)
    ]
    arrivals = []
    for i in range(200):
        length = 3000 if i % 2 == 0 else 40
        ids = list(range(i * 10_000, i * 10_000 + length))
        arrivals.append(VirtualRequest(i * 0.004, MODEL, ids, max_tokens=4, ignore_eos=True))

    def ttfts(strategy: object) -> list[float]:
        result = run_virtual(replicas, strategy, arrivals, poll_interval=0.05)  # type: ignore[arg-type]
        assert all(r.status == "ok" for r in result.records)
        return sorted(r.ttft for r in result.records if r.ttft is not None)

    oracle, rr = ttfts(Oracle()), ttfts(load("round_robin"))
    assert len(oracle) == len(rr) == 200
    assert sum(oracle) < sum(rr)
    assert oracle[-2] <= rr[-2]  # the p99 of 200
