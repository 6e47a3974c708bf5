"""`vllm-sim profiles` and `vllm-sim fit`: what they print and what they refuse."""

import subprocess

import pytest

from loadtest.sim.engine import EngineConfig
from loadtest.sim.fit import fit, trial
from loadtest.sim.profiles import PROFILES, load_profile
from tests.procs import bin_path


def vllm_sim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [bin_path("vllm-sim"), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_profiles_lists_every_shipped_profile_with_its_numbers() -> None:
    result = vllm_sim("profiles")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:] if line}
    assert set(PROFILES) <= set(rows)
    row = rows["llama-3.1-70b-fp8-kvfp8-rtxpro6000"]
    profile = load_profile("llama-3.1-70b-fp8-kvfp8-rtxpro6000")
    # engine, GPUs, memory, weights, KV dtype, GB, KiB a token, KV tokens, ITL, tok/s, sources
    assert row[1:8] == ["vllm", "1x", "rtxpro6000", "95.59", "fp8", "fp8", "72.65"]
    assert row[8] == "160" and row[9] == f"{profile.kv_tokens():,}"
    assert float(row[10]) == pytest.approx(profile.decode_itl(1, 1200) * 1e3, abs=0.05)
    assert int(row[12]) == len(profile.sources) > 3


def test_profiles_shows_any_composable_name_and_says_why_one_cannot_run() -> None:
    shown = vllm_sim("profiles", "llama-3.1-8b-fp4-kvfp8-b200", "--gpu-memory-utilization", "0.5")
    assert shown.returncode == 0 and "llama-3.1-8b-fp4-kvfp8-b200" in shown.stdout
    assert "--gpu-memory-utilization 0.5" in shown.stdout
    refused = vllm_sim("profiles", "llama-3.1-70b-bf16-h100")
    assert refused.returncode == 2
    assert "131.4 GiB per GPU; a h100 has 79.65 GiB" in refused.stderr


def test_fit_finds_the_largest_number_of_users_under_the_target() -> None:
    config = EngineConfig(prefix_caching=False)
    name = "llama-3.1-70b-fp8-rtxpro6000"
    found = fit(name, config, 4096, ttft_p99=2.0, output=256, max_users=16, per_user=4)
    assert found.best is not None and found.first_miss is not None
    assert found.best.ttft_p99 <= 2.0 < found.first_miss.ttft_p99
    assert found.first_miss.users == found.best.users + 1  # the search closed the gap
    # More users than that miss the target too; TTFT grows with users.
    more = trial(name, config, 4096, found.best.users + 3, 256, 4)
    assert more.ttft_p99 > found.best.ttft_p99
    # Shorter windows serve more users.
    short = fit(name, config, 2048, ttft_p99=2.0, output=256, max_users=8, per_user=4)
    assert short.best is not None and short.best.users >= found.best.users
    # A window longer than the KV cache holds does not fit at all.
    huge = fit(name, config, 131072, ttft_p99=2.0, output=128, max_users=4, per_user=2)
    assert huge.best is None and huge.first_miss is None and huge.kv_windows < 1


def test_fit_prints_a_row_per_context() -> None:
    result = vllm_sim(
        "fit",
        "--profile",
        "llama-3.1-70b-fp8-kvfp8-rtxpro6000",
        "--contexts",
        "2048,8192,131072",
        "--max-users",
        "8",
        "--requests-per-user",
        "3",
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[2:]]
    assert [row[0] for row in rows] == ["2,048", "8,192", "131,072"]
    assert int(rows[0][2]) >= 1 and "does not fit" in result.stdout
    bad = vllm_sim("fit", "--profile", "tiny", "--contexts", "100", "--output-tokens", "256")
    assert bad.returncode == 2 and "longer than --output-tokens" in bad.stderr
