"""How long the virtual-time engine takes for 100,000 requests on the six reference replicas.

Goal (issue 3): under 30 s on one core. Prints the CPU time (what one core spends:
on a shared machine wall time also counts other people's work), the wall time,
the simulated time, engine steps and the speed-up over real time, per strategy.

    .venv/bin/python bench/sim_virtual_bench.py [--requests 100000] [--rate 60]
        [--fleet baseline] [--strategy round_robin --strategy queue_depth]

A colocated fleet (two models on each of four GPUs) gets the same traffic for the models it
serves (Llama and Qwen, 50/50).
"""

import argparse
import math
import random
import statistics
import time
from collections.abc import Iterator

from loadtest.sim.engines import deployed_replicas
from loadtest.sim.layout import FLEETS
from loadtest.sim.virtual import VirtualRequest, run_virtual
from routers.registry import load

MODELS = (
    ("meta-llama/Llama-3.1-8B-Instruct", 0.4),
    ("Qwen/Qwen2.5-7B-Instruct", 0.4),
    ("mistralai/Mixtral-8x7B-Instruct-v0.1", 0.2),
)


def chat_mixed(requests: int, rate: float, seed: int, served: set[str]) -> Iterator[VirtualRequest]:
    """Poisson arrivals; log-normal prompts (median 400) half of which share a system prompt;
    the models of MODELS the fleet serves, in their proportions."""
    rng = random.Random(seed)
    names = [name for name, _ in MODELS if name in served]
    weights = [share for name, share in MODELS if name in served]
    system_prompts = [list(range(group * 1000, group * 1000 + 256)) for group in range(8)]
    filler = list(range(100_000, 106_000))
    now = 0.0
    for index in range(requests):
        now += rng.expovariate(rate)
        length = max(8, min(6000, round(400 * math.exp(0.8 * rng.gauss(0.0, 1.0)))))
        # One token unique to the request makes every block after it unique too (the
        # block hashes chain), and the shared filler costs no new int objects.
        prompt = [1_000_000 + index, *filler[: length - 1]]
        if rng.random() < 0.5:
            prompt = system_prompts[rng.randrange(8)] + prompt
        yield VirtualRequest(
            time=now,
            model=rng.choices(names, weights)[0],
            prompt_token_ids=prompt,
            max_tokens=1024,
            seed=index,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=60.0, help="requests per second (virtual)")
    parser.add_argument("--fleet", choices=FLEETS, default="baseline")
    parser.add_argument("--strategy", action="append", default=None)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    for name in args.strategy or ["round_robin", "queue_depth"]:
        strategy = load(name, seed=args.seed) if name == "queue_depth" else load(name)
        started, cpu_started = time.perf_counter(), time.process_time()
        fleet = deployed_replicas(args.fleet)
        result = run_virtual(
            fleet,
            strategy,
            chat_mixed(args.requests, args.rate, args.seed, {str(r.model) for r in fleet}),
        )
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        done = [record for record in result.records if record.status == "ok"]
        ttfts = sorted(record.ttft for record in done if record.ttft is not None)
        tokens = sum(record.output_tokens for record in done)
        print(
            f"{args.fleet} {name}: {len(result.records)} requests ({len(done)} ok), "
            f"{tokens} output tokens, {result.steps} steps in {cpu:.2f} s CPU ({wall:.2f} s wall) "
            f"= {result.sim_seconds:.0f} s simulated ({result.sim_seconds / cpu:.0f}x real time); "
            f"TTFT p50 {statistics.median(ttfts) * 1e3:.0f} ms "
            f"p99 {ttfts[int(0.99 * (len(ttfts) - 1))] * 1e3:.0f} ms"
        )


if __name__ == "__main__":
    main()
