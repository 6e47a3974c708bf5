"""Playing schedules in virtual time: the arrivals are what a live run sends, environments
become fleets (or say why they cannot), and a fleet's saturation rate is where its latency
turns."""

from pathlib import Path

import numpy as np
import pytest

from loadtest.environments.catalog import EnvironmentsError, load_environments, resolve
from loadtest.playback.arrivals import virtual_requests
from loadtest.playback.capacity import capacity
from loadtest.playback.fleets import LiveOnly, virtual_fleet
from loadtest.playback.play import play
from loadtest.sim.tokenizer import encode, encode_chat
from loadtest.workload import load_workload
from loadtest.workload.schedule import build_schedule

TINY = "{model: sim/tiny, profile: tiny, args: [--max-num-seqs, '8', --no-prefix-caching]}"
ENVIRONMENTS = f"""\
environments:
  tiny: {{strategy: round_robin, replicas: [{TINY}, {TINY}]}}
  faulty: {{replicas: [{{model: sim/tiny, profile: tiny, args: [--fault-429-rate, '0.1']}}]}}
  broken: {{replicas: [{{model: sim/tiny, profile: no-such-profile}}]}}
  remote: {{url: "http://127.0.0.1:9"}}
"""
WORKLOAD = """\
models: {sim/tiny: 1.0}
prompt_tokens: {dist: lognormal, median: 200, spread: 0.5, min: 16, max: 1500}
output_tokens: {dist: uniform, min: 4, max: 40}
arrival: {process: poisson, rate: 10}
requests: 300
seed: 9
"""


@pytest.mark.parametrize("name", ["chat-mixed", "shared-prefix", "long-context"])
def test_arrivals_are_the_prompts_the_simulator_would_tokenize(name: str) -> None:
    schedule = build_schedule(load_workload(name), seed=3, requests=200, rate=20)
    chat = schedule.workload.api == "chat"
    for request, arrival in zip(schedule.requests, virtual_requests(schedule), strict=True):
        text = schedule.prompt(request)
        expected = encode_chat([{"role": "user", "content": text}]) if chat else encode(text)
        assert arrival.prompt_token_ids == expected
        assert (arrival.time, arrival.model, arrival.max_tokens) == (
            request.at_s,
            request.model,
            request.max_tokens,
        )
        assert arrival.id == str(request.index)


def test_environments_become_fleets_or_say_why_not(tmp_path: Path) -> None:
    (tmp_path / "envs.yaml").write_text(ENVIRONMENTS)
    envs = load_environments(tmp_path / "envs.yaml")
    fleet = virtual_fleet(resolve(envs, "tiny"))
    assert [r.name for r in fleet.replicas] == ["replica-0", "replica-1"]
    assert {(r.config.max_num_seqs, r.config.prefix_caching) for r in fleet.replicas} == {
        (8, False)
    }
    reference = virtual_fleet(resolve(envs, "managed"))
    assert len(reference.replicas) == 6 and reference.strategy == "least_work"
    assert {r.config.kv_mode for r in reference.replicas} == {"elastic"}
    with pytest.raises(LiveOnly, match=r"remote.*runs only live"):
        virtual_fleet(resolve(envs, "remote"))
    with pytest.raises(LiveOnly, match="--fault-429-rate"):
        virtual_fleet(resolve(envs, "faulty"))
    with pytest.raises(EnvironmentsError, match="replica 0: unknown profile") as broken:
        virtual_fleet(resolve(envs, "broken"))
    assert not isinstance(broken.value, LiveOnly)


def test_a_played_run_keeps_live_records_and_engine_counters(tmp_path: Path) -> None:
    (tmp_path / "envs.yaml").write_text(ENVIRONMENTS)
    (tmp_path / "w.yaml").write_text(WORKLOAD)
    fleet = virtual_fleet(resolve(load_environments(tmp_path / "envs.yaml"), "tiny"))
    schedule = build_schedule(load_workload(tmp_path / "w.yaml"), seed=9)
    played = play(fleet, schedule, seed=1, keep_samples=True)
    assert [r.index for r in played.records] == list(range(300))
    assert all(r.ok and r.ttft_s is not None and r.e2e_s > r.ttft_s for r in played.records)
    assert {r.replica for r in played.records} == {"replica-0", "replica-1"}
    assert played.counters["prompt_tokens"] == sum(r.prompt_tokens or 0 for r in played.records)
    assert "prefix_cache_hit_rate" not in played.counters  # prefix caching off
    assert played.samples and {s.replica for s in played.samples} == {"replica-0", "replica-1"}
    again = play(fleet, schedule, seed=1)
    assert again.records == played.records  # same seed, same run


def test_the_saturation_rate_is_where_latency_turns(tmp_path: Path) -> None:
    (tmp_path / "envs.yaml").write_text(ENVIRONMENTS)
    (tmp_path / "w.yaml").write_text(WORKLOAD)
    workload = load_workload(tmp_path / "w.yaml")
    fleet = virtual_fleet(resolve(load_environments(tmp_path / "envs.yaml"), "tiny"))
    found = capacity(fleet, workload, seed=2, requests=600)
    assert found.bottleneck == "sim/tiny" and found.rate == found.per_model["sim/tiny"]

    def ttft_p50(load: float) -> float:
        schedule = build_schedule(workload, seed=4, rate=load * found.rate, requests=1500)
        records = play(fleet, schedule, seed=4).records
        return float(np.median([r.ttft_s for r in records if r.ttft_s is not None]))

    # Well below it the queue stays short; above it the queue grows through the run.
    assert ttft_p50(1.3) > 5 * ttft_p50(0.5)
    assert ttft_p50(0.8) < 3 * ttft_p50(0.5)
