"""`loadtest compare` between two engines: the same tiny model on a simulated vLLM and on a
simulated Ollama known to clients by an alias (the launcher gives that gateway a replicas
file), driven with one short schedule."""

import json
import re
import subprocess
from pathlib import Path

import yaml

from tests.procs import bin_path

WORKLOAD = """\
description: one model, short answers
models: {sim/tiny: 1.0}
prompt_tokens: {dist: uniform, min: 16, max: 64}
output_tokens: {dist: uniform, min: 4, max: 16}
arrival: {process: poisson, rate: 20}
requests: 30
seed: 5
slo: {ttft: 0.5, tpot: 0.05}
"""
ENVIRONMENTS = """\
environments:
  on-vllm:
    replicas: [{model: sim/tiny, profile: tiny}]
  on-ollama:
    replicas:
      - {model: "tiny:latest", alias: sim/tiny, profile: tiny, args: [--present-as, ollama]}
"""


def test_compare_vllm_with_ollama_under_an_alias(tmp_path: Path) -> None:
    (tmp_path / "w.yaml").write_text(WORKLOAD)
    (tmp_path / "envs.yaml").write_text(ENVIRONMENTS)
    argv = [bin_path("loadtest"), "compare", "on-vllm", "on-ollama"]
    argv += ["--workload", str(tmp_path / "w.yaml"), "--environments", str(tmp_path / "envs.yaml")]
    argv += ["--requests", "30", "--time-scale", "1", "--out", str(tmp_path / "results")]
    argv += ["--resamples", "200", "--no-progress", "--live", "--repeats", "1"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    where = re.search(r"results written to (\S+)", done.stdout)
    assert where is not None
    root = Path(where.group(1))
    document = json.loads((root / "compare.json").read_text())
    side = root / next(d for d in document["live"]["directories"] if d.startswith("b-"))
    records = [json.loads(line) for line in (side / "records.jsonl").read_text().splitlines()]
    # Every request asked for sim/tiny and was served by Ollama's tag behind the alias.
    assert len(records) == 30 and all(r["error_kind"] is None for r in records)
    assert {r["model"] for r in records} == {"sim/tiny"}
    # The gateway was given the alias in a replicas file, and found an Ollama behind it.
    listed = yaml.safe_load((side / "logs" / "replicas.yaml").read_text())
    assert [r["aliases"] for r in listed["replicas"]] == [{"sim/tiny": "tiny:latest"}]
    started = next(
        json.loads(line)
        for line in (side / "logs" / "gateway.log").read_text().splitlines()
        if '"gateway_started"' in line
    )
    assert list(started["kinds"].values()) == ["ollama"] and started["models"] == ["sim/tiny"]
