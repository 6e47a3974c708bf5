"""`loadtest run` against a real simulated replica (`vllm-sim serve --profile tiny`)."""

import json
from collections.abc import Callable
from pathlib import Path

import yaml

from loadtest.analysis.results import read_records
from loadtest.sim.tokenizer import encode
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
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(WORKLOAD))
    schedule = build_schedule(load_workload(path))
    for request in schedule.requests:
        assert len(encode(schedule.prompt(request))) == request.prompt_tokens


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
    overheads = set()
    for record, request in zip(records, schedule.requests, strict=True):
        assert record.ok, record.error
        assert record.model == "tiny-model"
        assert record.output_tokens == request.max_tokens  # ignore_eos: exactly max_tokens
        assert record.ttft_s is not None and record.ttft_s > 0
        assert len(record.itl_s) >= 1
        assert record.prompt_tokens is not None
        overheads.add(record.prompt_tokens - request.prompt_tokens)
    # The chat template adds the same few tokens to every prompt.
    assert len(overheads) == 1 and 0 <= overheads.pop() <= 16
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["figures"]["errors"] == 0
    assert summary["figures"]["ttft_p50_s"] > 0
