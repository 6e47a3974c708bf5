"""Quick evidence while tuning strategies: TTFT p99 against round_robin's, in virtual time.

On the Qwen pair of the reference fleet (stock vLLM, prefix caching on), three workloads,
Poisson arrivals at a fraction of the pair's saturation rate for that workload (found first
by flooding the pair under round_robin and counting completions per second):

- mixed: unique prompts, lognormal lengths (median 1,000 tokens, sigma 0.8, at most 16,000),
  outputs lognormal (median 200, sigma 0.8);
- chat: half the requests behind one of 4 system prompts of 256 tokens, prompts median 400
  (sigma 1.0), outputs median 120 (sigma 0.8), like the built-in chat-mixed workload;
- shared: every request behind one of 250 documents of 6,000 tokens (1.5 M tokens of distinct
  prefixes, more than one replica's KV cache of 1.02 M), questions median 200, outputs median
  100.

Percentiles leave out the first 20% of arrivals (caches warming). Not the study (that is
`loadtest study`): one seed per run unless --seeds, a fixed fleet.

    .venv/bin/python bench/strategy_evidence.py [--workload mixed --workload shared]
        [--load 0.85] [--requests 20000] [--seeds 1]
        [--strategy least_work --strategy "lmetric:cache_tokens=1000000"]
"""

import argparse
import math
import random
import statistics
import time
from collections.abc import Callable, Iterator

from loadtest.sim.engines import VirtualReplica, deployed_replicas
from loadtest.sim.virtual import VirtualRecord, VirtualRequest, run_virtual
from routers.registry import available, load, parse_options
from routers.types import Strategy

QWEN = "Qwen/Qwen2.5-7B-Instruct"
Workload = Callable[[int, float, int], Iterator[VirtualRequest]]


def _lognormal(rng: random.Random, median: float, sigma: float, low: int, high: int) -> int:
    return max(low, min(high, round(median * math.exp(sigma * rng.gauss(0.0, 1.0)))))


def mixed(count: int, rate: float, seed: int) -> Iterator[VirtualRequest]:
    rng = random.Random(seed)
    now = 0.0
    for i in range(count):
        now += rng.expovariate(rate)
        prompt = _lognormal(rng, 1000, 0.8, 8, 16_000)
        output = _lognormal(rng, 200, 0.8, 1, 4000)
        ids = list(range(i * 20_000, i * 20_000 + prompt))
        yield VirtualRequest(now, QWEN, ids, max_tokens=output, ignore_eos=True, id=f"m{i}")


def chat(count: int, rate: float, seed: int) -> Iterator[VirtualRequest]:
    rng = random.Random(seed)
    systems = [list(range(20_000_000 + g * 1000, 20_000_000 + g * 1000 + 256)) for g in range(4)]
    now = 0.0
    for i in range(count):
        now += rng.expovariate(rate)
        prompt = _lognormal(rng, 400, 1.0, 16, 8000)
        output = _lognormal(rng, 120, 0.8, 8, 1024)
        ids = list(range(i * 10_000, i * 10_000 + prompt))
        if rng.random() < 0.5:
            ids = systems[rng.randrange(4)] + ids
        yield VirtualRequest(now, QWEN, ids, max_tokens=output, ignore_eos=True, id=f"c{i}")


def shared(count: int, rate: float, seed: int) -> Iterator[VirtualRequest]:
    rng = random.Random(seed)
    documents = [
        list(range(30_000_000 + g * 10_000, 30_000_000 + g * 10_000 + 6000)) for g in range(250)
    ]
    now = 0.0
    for i in range(count):
        now += rng.expovariate(rate)
        question = _lognormal(rng, 200, 0.8, 8, 4000)
        output = _lognormal(rng, 100, 0.8, 1, 2000)
        ids = documents[rng.randrange(250)] + list(range(i * 5000, i * 5000 + question))
        yield VirtualRequest(now, QWEN, ids, max_tokens=output, ignore_eos=True, id=f"s{i}")


WORKLOADS: dict[str, Workload] = {"mixed": mixed, "chat": chat, "shared": shared}


def qwen_pair() -> list[VirtualReplica]:
    return [spec for spec in deployed_replicas("baseline") if spec.profile.startswith("qwen")]


def saturation(workload: Workload, seed: int) -> float:
    """Completions per second of the pair under round_robin when flooded (middle half)."""
    result = run_virtual(qwen_pair(), load("round_robin"), workload(4000, 1000.0, seed))
    ends = sorted(r.arrival + r.e2e for r in result.records if r.e2e is not None)
    first, last = ends[len(ends) // 4], ends[3 * len(ends) // 4]
    return (len(ends) // 2) / (last - first)


def ttft_p99(records: list[VirtualRecord]) -> float:
    measured = records[len(records) // 5 :]
    ttfts = sorted(r.ttft for r in measured if r.ttft is not None)
    return ttfts[int(0.99 * (len(ttfts) - 1))]


def build(spec: str, seed: int) -> Strategy:
    name, _, options = spec.partition(":")
    parsed = parse_options(options)
    if name != "round_robin" and "seed" not in parsed:
        parsed["seed"] = seed
    return load(name, **parsed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", action="append", choices=sorted(WORKLOADS))
    parser.add_argument("--load", type=float, default=0.85, help="fraction of saturation")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, default=1, help="seeds 1..N, ratios averaged")
    parser.add_argument("--strategy", action="append", help="name[:key=value,...]")
    args = parser.parse_args()
    strategies = args.strategy or [s for s in available() if s != "round_robin"]
    for name in args.workload or sorted(WORKLOADS):
        workload = WORKLOADS[name]
        rate = args.load * saturation(workload, 1)
        print(f"== {name}: saturation {rate / args.load:.1f} req/s, load {args.load} = {rate:.1f}")
        base: dict[int, float] = {}
        for seed in range(1, args.seeds + 1):
            base[seed] = ttft_p99(
                run_virtual(
                    qwen_pair(), load("round_robin"), workload(args.requests, rate, seed)
                ).records
            )
        print(f"  {'round_robin':<40} p99 {statistics.mean(base.values()) * 1e3:8.0f} ms   1.000")
        for spec in strategies:
            ratios, p99s = [], []
            started = time.process_time()
            for seed in range(1, args.seeds + 1):
                result = run_virtual(
                    qwen_pair(), build(spec, seed), workload(args.requests, rate, seed)
                )
                p99 = ttft_p99(result.records)
                p99s.append(p99)
                ratios.append(p99 / base[seed])
            cpu = time.process_time() - started
            print(
                f"  {spec:<40} p99 {statistics.mean(p99s) * 1e3:8.0f} ms   "
                f"{statistics.mean(ratios):.3f}   ({cpu:.0f} s CPU)",
                flush=True,
            )


if __name__ == "__main__":
    main()
