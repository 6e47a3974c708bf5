"""A rate sweep against a live simulated fleet lands its saturation point within 10% of the
knee that virtual time computes for the same fleet and workload.

The knee, both ways, is the rate at which the fleet finishes requests once it always has work
waiting: in virtual time, `loadtest.playback.capacity` floods the fleet and reads its
sustained completions per second; live, the saturation point is the first rate at which the
fleet takes requests on (first tokens) at under 90% of the offered rate (a queue grows), and
what it reports is that served rate there: past the knee a request is taken on only as
another finishes, so it is the fleet's own pace.
"""

import json
import os
import subprocess
from pathlib import Path

import yaml

from loadtest.environments.catalog import load_environments, resolve
from loadtest.playback.capacity import capacity
from loadtest.playback.fleets import virtual_fleet
from loadtest.workload.format import parse_workload
from tests.procs import bin_path

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
# One H100-profile replica with four seats: about 7 ms a step, so the knee sits near 17 req/s
# at time scale 1, a rate two shared cores send on time.
ENVIRONMENTS = {
    "environments": {
        "one-h100": {
            "strategy": "round_robin",
            "replicas": [
                {"model": MODEL, "profile": "llama-3.1-8b-h100", "args": ["--max-num-seqs", "4"]}
            ],
        }
    }
}
WORKLOAD = {
    "name": "knee",
    "models": [MODEL],
    "prompt_tokens": {"dist": "uniform", "min": 64, "max": 192},
    "output_tokens": 32,
    # Evenly spaced sends: the offered rate is the one asked for (a Poisson draw of 70 gaps
    # can run 25% slow and put a point meant past the knee below it).
    "arrival": {"process": "constant", "rate": 10},
    "requests": 70,
    "seed": 7,
    "slo": {"ttft": 0.5},
}


def test_a_rate_sweep_saturates_within_10_percent_of_the_virtual_knee(tmp_path: Path) -> None:
    envs_file = tmp_path / "envs.yaml"
    envs_file.write_text(yaml.safe_dump(ENVIRONMENTS))
    env = resolve(load_environments(envs_file), "one-h100")
    workload = parse_workload(WORKLOAD, default_name="knee", source="test")
    knee = capacity(virtual_fleet(env), workload, seed=7).rate
    rates = [round(knee * load, 2) for load in (0.6, 0.85, 1.2, 1.5)]
    suite = {
        "name": "knee",
        "targets": ["one-h100"],
        "environments": str(envs_file),
        "time_scale": 1,
        "workload": WORKLOAD,
        "sweep": {"rate": rates},
        "warmup": {"seconds": 0.5},
        "stop_when": {"served_ratio": 0.9},
        "telemetry": {"gpu": False},
    }
    path = tmp_path / "knee.yaml"
    path.write_text(yaml.safe_dump(suite))
    done = subprocess.run(
        [
            bin_path("loadtest"),
            "suite",
            "run",
            str(path),
            "--out",
            str(tmp_path / "r"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=170,
        env={**os.environ, "COLUMNS": "160"},
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (directory,) = (tmp_path / "r").glob("suite-knee-*")
    document = json.loads((directory / "suite.json").read_text())
    (target,) = document["targets"]
    assert target["saturation"], (
        f"no saturation point over {rates} (knee {knee:.1f}):\n{done.stdout}"
    )
    (found,) = target["saturation"]
    # Below the knee the fleet kept up; the first point past it is where the sweep stopped.
    assert found["values"]["rate"] > knee
    assert [row["saturation"] for row in document["points"]][:-1] == [False] * (
        len(document["points"]) - 1
    )
    assert abs(found["served_rps"] - knee) <= 0.10 * knee, (
        f"saturation {found['served_rps']:.2f} req/s vs virtual knee {knee:.2f}\n{done.stdout}"
    )
    assert "saturation point at rate=" in (directory / "report.html").read_text()
