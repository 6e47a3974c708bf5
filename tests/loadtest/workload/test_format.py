from pathlib import Path

import pytest
import yaml

from loadtest.workload import WorkloadError, builtin_workloads, load_workload

BASE = {
    "models": {"a": 3, "b": 1},
    "prompt_tokens": {"dist": "lognormal", "median": 100, "spread": 0.5},
    "output_tokens": 32,
    "arrival": {"process": "poisson", "rate": 5},
    "requests": 10,
}


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_builtins_load_and_describe_themselves() -> None:
    names = builtin_workloads()
    assert {"chat-mixed", "shared-prefix", "bursty", "long-context"} <= set(names)
    assert all(description for description in names.values())
    reference = load_workload("chat-mixed")
    assert [share for _, share in reference.models] == pytest.approx([0.4, 0.4, 0.2])
    assert [name for name, _ in reference.models] == [
        "meta-llama/Llama-3.1-8B-Instruct",
        "Qwen/Qwen2.5-7B-Instruct",
        "mistralai/Mixtral-8x7B-Instruct-v0.1",
    ]
    assert reference.arrival.process == "poisson"
    assert reference.prompt_tokens.kind == "lognormal"


def test_file_fields_become_the_workload(tmp_path: Path) -> None:
    data = {
        **BASE,
        "shared_prefix": {"fraction": 0.5, "tokens": 64, "groups": 3},
        "warmup": {"requests": 2, "seconds": 1.5},
        "slo": {"ttft": 0.5, "tpot": 0.05},
        "stream": False,
        "api": "completions",
    }
    workload = load_workload(write(tmp_path, data))
    assert workload.name == "w"
    assert workload.models == (("a", 0.75), ("b", 0.25))
    assert workload.output_tokens.kind == "fixed"
    assert workload.output_tokens.value == 32
    assert workload.prompt_tokens.median == 100
    assert workload.shared_prefix is not None
    assert workload.shared_prefix.groups == 3
    assert (workload.warmup.requests, workload.warmup.seconds) == (2, 1.5)
    assert (workload.slo.ttft_s, workload.slo.tpot_s) == (0.5, 0.05)
    assert (workload.stream, workload.api, workload.requests) == (False, "completions", 10)


def test_classic_testbench_fields_are_mapped(tmp_path: Path) -> None:
    data = {
        "models": ["m"],
        "num_requests": 40,
        "arrival_pattern": "uniform",
        "rate_per_second": 4,
        "prompt_tokens_min": 10,
        "prompt_tokens_max": 20,
        "completion_tokens": 7,
    }
    workload = load_workload(write(tmp_path, data))
    assert workload.requests == 40
    assert (workload.arrival.process, workload.arrival.rate) == ("constant", 4)
    assert (workload.prompt_tokens.kind, workload.prompt_tokens.low) == ("uniform", 10)
    assert workload.prompt_tokens.high == 20
    assert workload.output_tokens.value == 7

    closed = {"models": ["m"], "num_requests": 5, "concurrent_requests": 3}
    closed |= {"context_lengths": [100, 1000], "completion_tokens": 4}
    workload = load_workload(write(tmp_path, closed))
    assert workload.arrival.closed_loop
    assert workload.arrival.concurrency == 3
    assert workload.prompt_tokens.values == (100, 1000)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"prompt_tokens": {"dist": "normal", "median": 1}}, r"prompt_tokens\.dist: .*'lognormal'"),
        ({"prompt_tokens": {"dist": "uniform", "min": 5}}, r"prompt_tokens: dist uniform needs"),
        ({"arrival": {"process": "poisson"}}, r"arrival: process poisson needs rate"),
        ({"arrival": {"process": "poisson", "rate": -1}}, r"arrival\.rate: .*greater than 0"),
        ({"colour": "red"}, r"colour: unknown field; allowed: name, description, models"),
        ({"arrival": {"process": "poisson", "rat": 1}}, r"arrival\.rat: .*allowed: process, rate"),
        ({"prompt_tokens": "long"}, r"prompt_tokens: expected an integer or \{dist: fixed\|"),
        ({"output_tokens": None}, r"output_tokens: missing; allowed: an integer"),
        ({"num_requests": 5}, r"give requests or num_requests, not both"),
        ({"shared_prefix": {"fraction": 2, "tokens": 5}}, r"shared_prefix\.fraction: .*1"),
        ({"models": {"a": 0}}, r"every share must be positive"),
        ({"phases": [{"duration": 5, "models": ["a"]}]}, r"give models .* or phases .*not both"),
        ({"models": None, "phases": []}, r"phases must list at least one phase"),
        ({"models": None, "phases": [{"models": ["a"]}]}, r"phases\.0\.duration: Field required"),
        (
            {"models": None, "phases": [{"duration": 0, "models": ["a"]}]},
            r"phases\.0\.duration: Input should be greater than 0",
        ),
        (
            {"models": None, "phases": [{"duration": 5, "models": {"a": -1, "b": 2}}]},
            r"phases\.0: models: every share must be 0 or more",
        ),
        (
            {"models": None, "phases": [{"duration": 5, "models": {"a": 0}}]},
            r"phases\.0: models: at least one share must be positive",
        ),
        (
            {"models": None, "phases": [{"duration": 5, "models": ["a"], "rate": 3}]},
            r"phases\.0\.rate: unknown field; allowed: duration, models",
        ),
        ({"models": None}, r"models must name at least one model \(or give phases\)"),
    ],
)
def test_malformed_workload_names_the_field_and_what_is_allowed(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    data = {**BASE, **change}
    with pytest.raises(WorkloadError, match=message):
        load_workload(write(tmp_path, {k: v for k, v in data.items() if v is not None}))


def test_phases_give_a_mix_that_moves_over_time(tmp_path: Path) -> None:
    data = {k: v for k, v in BASE.items() if k != "models"}
    data["phases"] = [
        {"duration": 30, "models": {"a": 9, "b": 1}},
        {"duration": 10, "models": {"b": 1}},
    ]
    workload = load_workload(write(tmp_path, data))
    assert [(p.duration_s, p.models) for p in workload.phases] == [
        (30, (("a", 0.9), ("b", 0.1))),
        (10, (("b", 1.0),)),
    ]
    # The mix over a cycle: a 0.9 of 30 s, b the rest of the 40 s.
    assert dict(workload.models) == pytest.approx({"a": 0.675, "b": 0.325})
    assert workload.peak_shares() == {"a": 0.9, "b": 1.0}
    assert workload.cycle_s == 40
    assert "in phases (30s a 90%, b 10% -> 10s b 100%, repeated)" in workload.describe()
    assert [p.duration_s for p in workload.stretched(2.0).phases] == [60, 20]


def test_the_shifting_builtin_moves_traffic_between_two_models() -> None:
    workload = load_workload("shifting-models")
    first, second = (dict(phase.models) for phase in workload.phases)
    assert set(first) == set(second) == {name for name, _ in workload.models}
    busy = max(first, key=lambda m: first[m])
    assert max(second, key=lambda m: second[m]) != busy
    assert first[busy] > 5 * second[busy]


def test_unknown_name_lists_the_builtins() -> None:
    with pytest.raises(WorkloadError, match="not a built-in; built-ins: bursty, chat-mixed"):
        load_workload("chat-mixd")


def test_invalid_yaml_and_non_mapping_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("models: [a\n")
    with pytest.raises(WorkloadError, match="not valid YAML"):
        load_workload(path)
    path.write_text("- just\n- a list\n")
    with pytest.raises(WorkloadError, match="expected a mapping of fields"):
        load_workload(path)
