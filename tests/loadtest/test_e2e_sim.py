"""`loadtest run` against a real simulated replica (`vllm-sim serve --profile tiny`)."""

import json
from collections.abc import Callable
from pathlib import Path

import yaml

from loadtest.analysis.results import read_records
from loadtest.sim.tokenizer import encode, encode_chat
from loadtest.workload import load_workload
from loadtest.workload.schedule import build_schedule
from tests.loadtest.helpers import loadtest
from tests.procs import Proc, bin_path

WORKLOAD = {
    "models": ["tiny-model"],
    "prompt_tokens": {"dist": "uniform", "min": 20, "max": 200},
    "output_tokens": {"dist": "uniform", "min": 5, "max": 30},
    "shared_prefix": {"fraction": 0.5, "tokens": 64, "groups": 2},
    "arrival": {"process": "poisson", "rate": 25},
    "requests": 30,
    "seed": 5,
}


def test_prompts_have_their_length_in_the_simulators_tokenizer(tmp_path: Path) -> None:
    """Template included: the chat's whole prompt, the completion's text."""
    path = tmp_path / "w.yaml"
    for api in ("chat", "completions"):
        path.write_text(yaml.safe_dump({**WORKLOAD, "api": api}))
        schedule = build_schedule(load_workload(path))
        for request in schedule.requests:
            text = schedule.prompt(request)
            if api == "chat":
                counted = encode_chat([{"role": "user", "content": text}])
            else:
                counted = encode(text)
            assert len(counted) == request.prompt_tokens


def test_run_against_vllm_sim(spawn: Callable[..., Proc], tmp_path: Path) -> None:
    argv = [bin_path("vllm-sim"), "serve", "--model", "tiny-model", "--profile", "tiny"]
    sim = spawn([*argv, "--port", "{port}", "--log-level", "warning"])
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(WORKLOAD))
    result = loadtest(
        "run", "--target", sim.url, "--workload", str(path), "--out", str(tmp_path), cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (run_dir,) = tmp_path.glob("w-*")
    records = read_records(run_dir)
    schedule = build_schedule(load_workload(path))
    assert len(records) == 30
    for record, request in zip(records, schedule.requests, strict=True):
        assert record.ok, record.error
        assert record.model == "tiny-model"
        assert record.output_tokens == request.max_tokens  # ignore_eos: exactly max_tokens
        assert record.ttft_s is not None and record.ttft_s > 0
        assert len(record.itl_s) >= 1
        # Served exactly as asked, chat template included.
        assert record.prompt_tokens == record.requested_prompt_tokens == request.prompt_tokens
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["figures"]["errors"] == 0
    assert summary["figures"]["ttft_p50_s"] > 0
    assert summary["figures"]["prompt_tokens_served_ratio"] == 1.0
    # vllm-sim is recognised: no tokenizer warning, and no length warning either.
    assert "no --tokenizer" not in result.stdout, result.stdout
    assert "the server counted" not in result.stdout, result.stdout
