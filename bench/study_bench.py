"""What `loadtest study` costs: one strategy's run of 100,000 requests on 100 replicas.

Goal (issue 11): under 60 s on one core, per strategy (the oracle included). Plays the
study's own path (schedule from a built-in workload, arrivals tokenized as the simulator
does, the virtual runner, the summary) on 100 copies of a profile at a share of their
saturation rate, and prints each strategy's CPU time (this process only: other work on a
shared machine counts as little as it can), wall time and simulated time.

    .venv/bin/python bench/study_bench.py [--requests 100000] [--replicas 100]
        [--workload chat-mixed] [--load 0.85] [--strategy least_work --strategy oracle]
"""

import argparse
import time

from loadtest.analysis.summary import summarize
from loadtest.playback.arrivals import virtual_requests
from loadtest.playback.play import request_record
from loadtest.sim.virtual import run_virtual
from loadtest.study.fleet import DEFAULT_PROFILE, new_strategy, study_fleet
from loadtest.study.run import saturation
from loadtest.workload.format import load_workload
from loadtest.workload.schedule import build_schedule

GOAL_S = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--replicas", type=int, default=100)
    parser.add_argument("--profile", default=DEFAULT_PROFILE)
    parser.add_argument("--workload", default="chat-mixed")
    parser.add_argument("--load", type=float, default=0.85)
    parser.add_argument("--strategy", action="append", default=None)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    fleet = study_fleet(args.replicas, args.profile, "baseline")
    workload = fleet.fit(load_workload(args.workload))
    found = saturation(fleet, workload, seed=args.seed, poll=1.0)
    rate = args.load * found.rate
    print(f"{fleet.name}, {workload.name}: {found.describe()}; load {args.load} = {rate:.0f} req/s")
    schedule = build_schedule(workload, seed=args.seed, rate=rate, requests=args.requests)
    for name in args.strategy or ["round_robin", "least_work", "oracle"]:
        started, cpu_started = time.perf_counter(), time.process_time()
        result = run_virtual(
            fleet.replicas, new_strategy(name, seed=args.seed), virtual_requests(schedule)
        )
        summary = summarize([request_record(r) for r in result.records], workload)
        cpu = time.process_time() - cpu_started
        wall = time.perf_counter() - started
        verdict = "within" if cpu <= GOAL_S else "OVER"
        print(
            f"  {name:<20} {len(result.records)} requests in {cpu:6.1f} s CPU ({wall:.1f} s wall) "
            f"= {result.sim_seconds:.0f} s simulated; TTFT p99 "
            f"{(summary.ttft.p99 or 0.0) * 1e3:.0f} ms; {verdict} the {GOAL_S:g} s goal",
            flush=True,
        )


if __name__ == "__main__":
    main()
