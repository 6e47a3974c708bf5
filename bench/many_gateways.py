"""Several gateways in front of one fleet, in virtual time: does their local credit herd?

Each of N gateways has its own `ReplicaPool` (its own in-flight counts and its own credit for
what it sent since a scrape), its own strategy object and its own scrapes of every replica
(gateway g scrapes replica i at (i / R + phase_g) of an interval, phase_g drawn at random:
gateways start at different times). Every arrival goes to a gateway drawn at random, as a
Kubernetes Service spreads connections. The replicas are shared: 8 simulated vLLM replicas of
Llama-3.1-8B on H100 (loadtest.sim), stock settings, prefix caching on, unique prompts.

Workload: Poisson arrivals; prompts lognormal (median 1,000 tokens, sigma 0.8, at most
16,000), outputs lognormal (median 200, sigma 0.8). The load is a fraction of the fleet's
saturation rate, found first by flooding it (one gateway, queue_depth) and counting
completions per second between 20% and 80% of the drain. TTFT percentiles leave out the
first 20% of arrivals.

    .venv/bin/python bench/many_gateways.py [--requests 20000] [--load 0.85] [--seeds 3]
        [--gateways 1 2 4 8] [--figure docs/figures/many-gateways-0.85.png]

Figures and what they mean: docs/scale-out.md, "Several gateways" (10,000 requests, 3 seeds,
at 0.85 and 0.7; about 5 minutes per load on one core).
"""

import argparse
import heapq
import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from loadtest.sim.engine import EngineConfig
from loadtest.sim.types import FinishedRequest, SimRequest
from loadtest.sim.virtual import (
    VirtualReplica,
    VirtualRequest,
    VirtualScrapes,
    build_engines,
    metrics_of,
    route_request,
    run_virtual,
)
from routers.pool import Replica, ReplicaPool
from routers.registry import StrategyOptionsError, load
from routers.types import RouteRequest, Strategy

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
REPLICAS = 8
_STEP_END, _SCRAPE = 0, 1


@dataclass(frozen=True)
class Setup:
    label: str
    strategy: str
    options: tuple[tuple[str, object], ...] = ()
    poll_interval: float = 1.0


SETUPS = (
    Setup("queue_depth, scrape 1 s", "queue_depth"),
    Setup("round_robin", "round_robin"),
    Setup("queue_depth, scrape 0.25 s", "queue_depth", poll_interval=0.25),
    Setup("p2c (local work)", "p2c"),
)


def fleet() -> list[VirtualReplica]:
    return [
        VirtualReplica(f"r{i}", "llama-3.1-8b-h100", EngineConfig(), model=MODEL)
        for i in range(REPLICAS)
    ]


def workload(n: int, rate: float, seed: int) -> list[VirtualRequest]:
    rng = random.Random(seed)
    arrivals, now, next_token = [], 0.0, 0
    for i in range(n):
        now += rng.expovariate(rate)
        size = min(16_000, max(8, round(rng.lognormvariate(math.log(1000), 0.8))))
        output = max(1, round(rng.lognormvariate(math.log(200), 0.8)))
        ids = list(range(next_token, next_token + size))  # unique: no prefix is shared
        next_token += size
        arrivals.append(VirtualRequest(now, MODEL, ids, output, True, id=f"q{i}"))
    return arrivals


def saturation_rate(seed: int) -> float:
    flood = [
        VirtualRequest(i * 1e-5, a.model, a.prompt_token_ids, a.max_tokens, True, id=a.id)
        for i, a in enumerate(workload(4000, 1.0, seed))
    ]
    result = run_virtual(fleet(), load("queue_depth"), flood)
    ends = sorted(r.arrival + r.e2e for r in result.records if r.e2e is not None)
    lo, hi = ends[len(ends) // 5], ends[len(ends) * 4 // 5]
    return (len(ends) * 3 // 5) / (hi - lo)


class Gateways:
    """N gateways (pool, strategy, scrapes each) over one set of engines."""

    def __init__(self, setup: Setup, n: int, rng: random.Random) -> None:
        self.now = 0.0
        self.engines = {spec.name: engine for spec, _, engine in build_engines(fleet())}
        self.pools: list[ReplicaPool[Replica]] = []
        self.strategies: list[Strategy] = []
        self.scrapes: list[VirtualScrapes] = []
        self.events: list[tuple[float, int, int, int, str]] = []
        self.sequence = 0
        interval = setup.poll_interval
        self.interval = interval
        for g in range(n):
            pool: ReplicaPool[Replica] = ReplicaPool(
                (
                    Replica(id=name, url=f"virtual://{name}", models=(MODEL,))
                    for name in self.engines
                ),
                stale_after=3 * interval,
                clock=lambda: self.now,
            )
            self.pools.append(pool)
            options = dict(setup.options)
            try:  # each gateway draws its own random numbers, where the strategy draws any
                strategy = load(setup.strategy, seed=rng.randrange(1 << 30), **options)
            except StrategyOptionsError:
                strategy = load(setup.strategy, **options)
            self.strategies.append(strategy)
            self.scrapes.append(VirtualScrapes(pool))
            phase = rng.random()
            for i, name in enumerate(self.engines):
                self._push(interval * ((i / REPLICAS + phase) % 1.0), _SCRAPE, g, name)
        self.busy: dict[str, bool] = dict.fromkeys(self.engines, False)
        self.step: dict[str, tuple[tuple[str, ...], tuple[FinishedRequest, ...]]] = {}
        self.routed: dict[str, tuple[int, RouteRequest, float]] = {}
        self.ttft: dict[str, float] = {}
        self.rng = rng

    def _push(self, at: float, kind: int, g: int, name: str) -> None:
        self.sequence += 1
        heapq.heappush(self.events, (at, kind, self.sequence, g, name))

    def play(self, arrivals: Sequence[VirtualRequest]) -> dict[str, float]:
        pending = iter(arrivals)
        arrival = next(pending, None)
        while arrival is not None or self.routed:
            if arrival is None or self.events[0][0] <= arrival.time:
                at, kind, _, g, name = heapq.heappop(self.events)
                self.now = at
                if kind == _STEP_END:
                    self._end_step(name)
                else:
                    self.scrapes[g].begin(name, metrics_of(self.engines[name].stats()))
                    self.scrapes[g].end(name)
                    self._push(at + self.interval, _SCRAPE, g, name)
                continue
            self.now = arrival.time
            self._arrive(arrival)
            arrival = next(pending, None)
        return self.ttft

    def _arrive(self, arrival: VirtualRequest) -> None:
        g = self.rng.randrange(len(self.pools))
        route = route_request(arrival, arrival.id or "", self.now)
        view = self.strategies[g].choose(route, self.pools[g].candidates(MODEL))
        assert view is not None
        self.pools[g].acquire(view.id, route.prompt_tokens_estimate)
        request = SimRequest(
            id=route.request_id,
            prompt_token_ids=arrival.prompt_token_ids,
            max_tokens=arrival.max_tokens,
            ignore_eos=True,
            arrival=self.now,
        )
        self.engines[view.id].add(request, self.now)
        self.routed[route.request_id] = (g, route, self.now)
        if not self.busy[view.id]:
            self._start_step(view.id)

    def _start_step(self, name: str) -> None:
        result = self.engines[name].step(self.now)
        self.busy[name] = True
        self.step[name] = (result.first_token, result.finished)
        self._push(self.now + result.duration, _STEP_END, -1, name)

    def _end_step(self, name: str) -> None:
        first, finished = self.step.pop(name)
        for request_id in first:
            g, route, arrived = self.routed[request_id]
            self.pools[g].first_byte(name, route.prompt_tokens_estimate)
            self.ttft[request_id] = self.now - arrived
        for done in finished:
            g, route, _ = self.routed.pop(done.id)
            self.pools[g].release(name, route.prompt_tokens_estimate)
        if self.engines[name].has_work():
            self._start_step(name)
        else:
            self.busy[name] = False


def p99(ttfts: dict[str, float], arrivals: Sequence[VirtualRequest]) -> float:
    kept = sorted(ttfts[a.id] for a in arrivals[len(arrivals) // 5 :] if a.id in ttfts)
    return kept[min(len(kept) - 1, int(0.99 * len(kept)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--load", type=float, default=0.85)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--gateways", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--figure", help="write a PNG of TTFT p99 against N here")
    args = parser.parse_args()
    rate = args.load * saturation_rate(0)
    print(f"fleet: {REPLICAS} x llama-3.1-8b-h100; load {args.load} = {rate:.2f} req/s")
    table: dict[str, list[float]] = {}
    for setup in SETUPS:
        row = []
        for n in args.gateways:
            runs = []
            for seed in range(args.seeds):
                arrivals = workload(args.requests, rate, 1000 + seed)
                runs.append(p99(Gateways(setup, n, random.Random(seed)).play(arrivals), arrivals))
            row.append(statistics.median(runs))
        table[setup.label] = row
    base = table[SETUPS[0].label][0]
    head = "".join(f"{f'N={n}':>16}" for n in args.gateways)
    print(f"TTFT p99 (s), median of {args.seeds} seeds; in brackets: / one gateway's")
    print(f"{'':28}{head}")
    for label, row in table.items():
        cells = "".join(f"{f'{v:.3f} ({v / row[0]:.2f}x)':>16}" for v in row)
        print(f"{label:28}{cells}")
    print(f"(one gateway, queue_depth, scrape 1 s: {base:.3f} s)")
    if args.figure:
        draw(args.figure, args.gateways, table, args.load)


def draw(path: str, gateways: list[int], table: dict[str, list[float]], load_: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for label, row in table.items():
        ax.plot(gateways, row, marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(gateways, [str(n) for n in gateways])
    ax.set_xlabel("gateways in front of the same 8 replicas")
    ax.set_ylabel("TTFT p99 (s)")
    ax.set_title(f"Several gateways, each with its own view, at {load_:.0%} load (virtual time)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main()
