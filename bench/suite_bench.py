"""How long does an 8-point suite take against the simulator, and does the generator stay on
time while it runs?

Runs `loadtest suite run` (the real command, in a subprocess) on an 8-point rate sweep against a
local simulated environment: one Llama-3.1-8B replica on the H100 profile with four seats
(about 7 ms a decode step, so its knee sits near 15 req/s at time scale 1: a rate two shared
cores send on time, and few enough tokens per second, ~600, that the simulator keeps its
modelled pace). The rates run from 0.3 to 1.35 times the knee that virtual time computes for
the same fleet and workload, Poisson arrivals, --requests per point, 1 s of cool-down. Prints
the wall time (fleet start-up and report included) and, per point, the rates, the generator's
lag p99 (budget 5 ms) and how long the point took.

    .venv/bin/python bench/suite_bench.py [--time-scale 1] [--requests 60] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from loadtest.environments.catalog import load_environments, resolve
from loadtest.playback.capacity import capacity
from loadtest.playback.fleets import virtual_fleet
from loadtest.workload.format import parse_workload

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
ENVIRONMENTS = {
    "environments": {
        "one-h100": {
            "description": "one Llama-3.1-8B replica, H100 profile, 4 seats",
            "strategy": "round_robin",
            "replicas": [
                {"model": MODEL, "profile": "llama-3.1-8b-h100", "args": ["--max-num-seqs", "4"]}
            ],
        }
    }
}
LOADS = (0.3, 0.45, 0.6, 0.75, 0.9, 1.05, 1.2, 1.35)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--keep", type=Path, help="write results here (default: a temp dir)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="suite-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    envs = work / "environments.yaml"
    envs.write_text(yaml.safe_dump(ENVIRONMENTS))
    workload = {
        "name": "chat-short",
        "models": [MODEL],
        "prompt_tokens": {"dist": "uniform", "min": 64, "max": 512},
        "output_tokens": {"dist": "uniform", "min": 16, "max": 64},
        "arrival": {"process": "poisson", "rate": 1},
        "requests": args.requests,
        "seed": 42,
        "slo": {"ttft": 0.5, "tpot": 0.02},
    }
    env = resolve(load_environments(envs), "one-h100")
    parsed = parse_workload(workload, default_name="chat-short", source="bench")
    knee = capacity(virtual_fleet(env), parsed, seed=42).rate
    rates = [round(knee * load, 2) for load in LOADS]
    suite = {
        "name": "bench-rate",
        "description": "8-point rate sweep, one simulated H100 replica with four seats",
        "targets": ["one-h100"],
        "environments": str(envs),
        "time_scale": args.time_scale,
        "workload": workload,
        "sweep": {"rate": rates},
        "warmup": {"requests": 5},
        "cooldown": 1,
        "stop_when": {"error_rate": 0.2},
    }
    path = work / "bench-rate.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    loadavg = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"suite {path}: virtual knee {knee:.2f} req/s; rates {rates} req/s (hardware time), "
        f"{args.requests} requests each, time scale {args.time_scale:g}; {os.cpu_count()} cpus, "
        f"load average {loadavg}",
        flush=True,
    )
    loadtest = Path(sys.executable).parent / "loadtest"
    t0 = time.monotonic()
    done = subprocess.run(
        [str(loadtest), "suite", "run", str(path), "--out", str(work / "results"), "--no-progress"],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.monotonic() - t0
    if done.returncode != 0:
        print(done.stdout + done.stderr)
        return 1
    (directory,) = (work / "results").glob("suite-bench-rate-*")
    document = json.loads((directory / "suite.json").read_text())
    print(
        f"{'rate':>6} {'offered':>8} {'served':>6} {'ratio':>6} {'out tok/s':>9} "
        f"{'TTFT p99':>9} {'lag p99':>8} {'point s':>7}"
    )
    for row in document["points"]:
        print(
            f"{row['rate']:>6g} {row['offered_rps']:>8.2f} {row['served_rps']:>6.2f} "
            f"{row['served_ratio']:>6.2f} {row['output_tokens_per_s']:>9.0f} "
            f"{row['ttft_p99_s'] * 1000:>7.0f}ms {row['lag_p99_s'] * 1000:>6.1f}ms "
            f"{row['ended_at'] - row['started_at']:>7.1f}"
        )
    worst = max(row["lag_p99_s"] for row in document["points"])
    loadavg = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"{len(document['points'])} points in {wall:.0f} s wall (fleet start-up and report "
        f"included); worst lag p99 {worst * 1000:.1f} ms (budget 5 ms); load average now "
        f"{loadavg}"
    )
    print(f"results: {directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
