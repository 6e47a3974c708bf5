from pathlib import Path

import pytest

from loadtest.environments.catalog import (
    USER_FILE,
    Environment,
    EnvironmentsError,
    LocalReplica,
    common_tokenizer,
    load_environments,
    resolve,
)
from loadtest.environments.launcher import gateway_intervals, sim_flags
from loadtest.workload.counting import TokenizerChoice


def test_shipped_environments_define_the_reference_pairs(tmp_path: Path) -> None:
    envs = load_environments(cwd=tmp_path)
    assert (envs["baseline"].fleet, envs["baseline"].strategy) == ("baseline", "round_robin")
    assert (envs["managed"].fleet, envs["managed"].strategy) == ("managed", "least_work")
    # managed-prefix differs from managed only in its fleet (prefix caching on).
    prefix = envs["managed-prefix"]
    assert (prefix.fleet, prefix.strategy) == ("managed-prefix", "least_work")
    # rr and qd differ only in strategy, on the same fleet.
    assert (envs["rr"].fleet, envs["rr"].strategy) == ("baseline", "round_robin")
    assert (envs["qd"].fleet, envs["qd"].strategy) == ("baseline", "queue_depth")
    assert all(env.is_local for env in envs.values())


def test_user_file_overrides_and_extends(tmp_path: Path) -> None:
    user = tmp_path / "envs.yaml"
    user.write_text(
        "environments:\n"
        "  managed: {url: 'http://10.0.0.5:8081/'}\n"
        "  pair:\n"
        "    strategy: queue_depth\n"
        "    time_scale: 4\n"
        "    replicas:\n"
        "      - {model: m, profile: tiny, args: ['--max-num-seqs', '8']}\n"
        "      - {model: m}\n"
    )
    envs = load_environments(user, cwd=tmp_path)
    assert envs["managed"].url == "http://10.0.0.5:8081"
    assert not envs["managed"].is_local
    assert envs["pair"].replicas == (
        LocalReplica("m", "tiny", ("--max-num-seqs", "8")),
        LocalReplica("m", "tiny"),
    )
    assert envs["pair"].time_scale == 4
    assert envs["baseline"].fleet == "baseline"  # untouched entries stay


def test_user_file_in_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / USER_FILE).write_text("environments:\n  prod: {url: 'http://127.0.0.1:9'}\n")
    assert resolve(load_environments(cwd=tmp_path), "prod").url == "http://127.0.0.1:9"


def test_unknown_name_lists_known_names(tmp_path: Path) -> None:
    envs = load_environments(cwd=tmp_path)
    with pytest.raises(EnvironmentsError) as err:
        resolve(envs, "managd")
    assert "unknown environment 'managd'" in str(err.value)
    assert "baseline, baseline-b200-fp4, baseline-noprefix, colocated-elastic" in str(err.value)
    assert "colocated-static, managed" in str(err.value)
    assert "managed-prefix, managed-rr, qd, rr" in str(err.value)


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ("  x: {url: 'http://a', fleet: baseline}", "exactly one of url, fleet or replicas"),
        ("  x: {fleet: big}", "fleet must be one of baseline, baseline-noprefix, managed"),
        ("  x: {url: 'ftp://a'}", "url must start with http"),
        ("  x: {replicas: []}", "at least one replica"),
        ("  x: {fleet: baseline, time_scale: 0}", "time_scale"),
        ("  x: {fleet: baseline, stratgy: qd}", "stratgy"),
        ("  x: {replicas: [{profile: tiny}]}", "replicas.0.model"),
    ],
)
def test_malformed_entry_names_environment_and_field(
    tmp_path: Path, body: str, complaint: str
) -> None:
    user = tmp_path / "envs.yaml"
    user.write_text("environments:\n" + body + "\n")
    with pytest.raises(EnvironmentsError) as err:
        load_environments(user, cwd=tmp_path)
    assert "environment 'x'" in str(err.value)
    assert complaint in str(err.value)


def test_missing_or_shapeless_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentsError, match="not found"):
        load_environments(tmp_path / "nope.yaml", cwd=tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just a list\n")
    with pytest.raises(EnvironmentsError, match="expected a mapping"):
        load_environments(bad, cwd=tmp_path)


def test_default_time_scale_applies_only_where_unset(tmp_path: Path) -> None:
    user = tmp_path / "envs.yaml"
    user.write_text("environments:\n  slow: {fleet: baseline, time_scale: 3}\n")
    envs = load_environments(user, cwd=tmp_path)
    assert envs["baseline"].with_time_scale(10).time_scale == 10
    assert envs["slow"].with_time_scale(10).time_scale == 3


def test_memory_share_and_gateway_intervals_follow_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "envs.yaml"
    path.write_text(
        "environments:\n"
        "  roomy: {fleet: managed, strategy: queue_depth, gpu_memory_utilization: 0.95}\n"
        "  bad: {fleet: managed, gpu_memory_utilization: 1.5}\n"
    )
    with pytest.raises(EnvironmentsError, match="gpu_memory_utilization"):
        load_environments(path)
    path.write_text("environments:\n  roomy: {fleet: managed, gpu_memory_utilization: 0.95}\n")
    roomy = resolve(load_environments(path), "roomy").with_time_scale(4.0)
    assert roomy.gpu_memory_utilization == 0.95
    assert sim_flags(roomy) == ["--time-scale", "4", "--gpu-memory-utilization", "0.95"]
    # A fleet four times slower than the hardware is polled four times less often.
    assert gateway_intervals(roomy) == {
        "GATEWAY_POLL_INTERVAL": "4",
        "GATEWAY_HEALTH_INTERVAL": "8",
    }
    baseline = resolve(load_environments(), "baseline")
    assert baseline.gpu_memory_utilization is None and sim_flags(baseline) == []


def test_an_environment_names_its_tokenizer(tmp_path: Path) -> None:
    user = tmp_path / "envs.yaml"
    user.write_text(
        "environments:\n"
        "  vllm: {url: 'http://10.0.0.5:8000', tokenizer: meta-llama/Llama-3.1-8B-Instruct}\n"
        "  mixed:\n"
        "    url: http://10.0.0.6:8000\n"
        "    tokenizer: {m1: /models/m1, m2: org/m2}\n"
    )
    envs = load_environments(user, cwd=tmp_path)
    assert envs["vllm"].tokenizer == "meta-llama/Llama-3.1-8B-Instruct"
    assert envs["mixed"].tokenizer == {"m1": "/models/m1", "m2": "org/m2"}
    assert envs["baseline"].tokenizer is None
    user.write_text("environments:\n  bad: {url: 'http://h:1', tokenizer: [a, b]}\n")
    with pytest.raises(EnvironmentsError, match="tokenizer"):
        load_environments(user, cwd=tmp_path)


def test_one_tokenizer_per_model_serves_both_sides() -> None:
    a = Environment("a", url="http://h:1", tokenizer={"m1": "tok-a"})
    b = Environment("b", url="http://h:2", tokenizer={"m2": "tok-b"})
    choice = common_tokenizer(TokenizerChoice(), a, b, ["m1", "m2"])
    assert (choice.name_for("m1"), choice.name_for("m2")) == ("tok-a", "tok-b")
    clash = Environment("c", url="http://h:3", tokenizer="tok-c")
    with pytest.raises(EnvironmentsError, match="different tokenizers for m1"):
        common_tokenizer(TokenizerChoice(), a, clash, ["m1"])
    # --tokenizer settles it; a local fleet names none.
    assert common_tokenizer(TokenizerChoice("tok-x"), a, clash, ["m1"]).name_for("m1") == "tok-x"
    local = Environment("local", fleet="baseline")
    assert common_tokenizer(TokenizerChoice(), local, local, ["m1"]).given is False


def test_a_named_fleet_runs_on_other_hardware(tmp_path: Path) -> None:
    shipped = resolve(load_environments(cwd=tmp_path), "baseline-b200-fp4")
    assert shipped.fleet == "baseline" and shipped.profiles == {
        "llama-3.1-8b-h100": "llama-3.1-8b-fp4-b200",
        "qwen2.5-7b-h100": "qwen2.5-7b-fp4-b200",
        "mixtral-8x7b-h100-tp2": "mixtral-8x7b-fp4-b200-tp2",
    }
    assert "on llama-3.1-8b-fp4-b200" in shipped.describe()
    path = tmp_path / "envs.yaml"
    path.write_text(
        "environments:\n"
        "  fp8: {fleet: managed, gpu: h200, precision: fp8, kv_dtype: fp8}\n"
        "  mine:\n"
        "    fleet: baseline\n"
        "    profiles: {mixtral-8x7b-h100-tp2: mixtral-8x7b-fp4-b200}\n"
    )
    envs = load_environments(path)
    assert envs["fp8"].profiles["qwen2.5-7b-h100"] == "qwen2.5-7b-fp8-kvfp8-h200"
    assert envs["mine"].profiles == {"mixtral-8x7b-h100-tp2": "mixtral-8x7b-fp4-b200"}
    assert resolve(envs, "baseline").profiles == {}


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ("{fleet: baseline, precision: fp4}", "has no FP4 tensor cores"),
        ("{fleet: baseline, gpu: a100}", "expected <model>-<weights>"),
        ("{fleet: baseline, profiles: {gpt-5: x}}", "'gpt-5' is not a profile of the layout"),
        ("{replicas: [{model: m}], gpu: b200}", "gpu applies to a named fleet"),
    ],
)
def test_hardware_that_cannot_run_the_layout_is_refused(
    tmp_path: Path, body: str, complaint: str
) -> None:
    path = tmp_path / "envs.yaml"
    path.write_text(f"environments:\n  x: {body}\n")
    with pytest.raises(EnvironmentsError, match="environment 'x'") as err:
        load_environments(path)
    assert complaint in str(err.value)
