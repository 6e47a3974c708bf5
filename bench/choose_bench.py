"""What one `choose` costs, per registered strategy, with 6 and with 500 candidates.

Targets (issue 11): at most 5 µs with 6 candidates and 50 µs with 500. Each strategy is
first warmed on 5,000 requests (its prefix index, rings and estimates filled), then timed on
2,000 more, the best of `--repeats` rounds (interleaved over the strategies, each after 500
untimed requests to warm the caches again), hooks (finishing requests) outside the timed
part. CPU
time of this process (time.process_time), so that other work on a shared machine counts
as little as it can. Requests
carry 64 prefix hashes (a prompt of 1,000 tokens or more): a quarter start with one of 50
shared system prompts of 16 blocks, a session from a pool of 200 and 1,000 prompt tokens
on average; candidates have fresh metrics and uneven loads.

    .venv/bin/python bench/choose_bench.py [--strategy lmetric] [--repeats 5]
"""

import argparse
import random
import time
import zlib

from routers import Metrics, Outcome, ReplicaView, RouteRequest
from routers.registry import available, load
from routers.types import Strategy

TARGETS_US = {6: 5.0, 500: 50.0}
WARM = 5000
TIMED = 2000
REWARM = 500


def candidates(count: int, rng: random.Random) -> list[ReplicaView]:
    views = []
    for i in range(count):
        in_flight = rng.randrange(0, 40)
        views.append(
            ReplicaView(
                id=f"replica-{i:03d}",
                url=f"http://10.0.{i // 250}.{i % 250}:8000",
                models=("m",),
                healthy=True,
                in_flight=in_flight,
                dispatched_since_scrape=rng.randrange(0, 5),
                in_flight_at_scrape=max(0, in_flight - rng.randrange(0, 5)),
                awaiting_first_byte=in_flight // 4,
                awaiting_prompt_tokens=(in_flight // 4) * rng.randrange(200, 2000),
                metrics=Metrics(
                    waiting=float(rng.randrange(0, 8)),
                    running=float(in_flight),
                    kv_usage=rng.random(),
                    prefix_hit_rate=rng.random(),
                ),
                metrics_age=rng.random(),
                metrics_stale=False,
                # Every replica streams, its step under way ending after every request's
                # `now`: each score takes the step phase's whole path (its dearest), and
                # the phase outweighs the rest, so `least_work` keeps choosing one replica.
                step_ends_at=1e9 + i,
            )
        )
    return views


def requests(count: int, rng: random.Random, offset: int) -> list[RouteRequest]:
    out = []
    for i in range(count):
        if rng.random() < 0.25:
            start = [zlib.crc32(b"system", rng.randrange(50) + 1)]
        else:
            start = [zlib.crc32(b"user", offset + i + 1_000_000)]
        hashes = start
        while len(hashes) < 64:
            hashes.append(
                zlib.crc32(b"b" if len(hashes) < 16 else b"u%d" % (offset + i), hashes[-1])
            )
        out.append(
            RouteRequest(
                model="m",
                stream=True,
                prompt_tokens_estimate=rng.randrange(200, 2000),
                request_id=f"r{offset + i}",
                prefix_hashes=tuple(hashes),
                session=f"s{rng.randrange(200)}",
                now=(offset + i) * 0.001,  # a request a millisecond
            )
        )
    return out


class Timed:
    """One strategy on one candidate list: warmed, then timed a round at a time."""

    def __init__(self, strategy: Strategy, views: list[ReplicaView]) -> None:
        self.strategy, self.views = strategy, views
        self.rng = random.Random(7)
        self.rounds = 0
        self.best = float("inf")
        for view in views:
            hook = getattr(strategy, "on_replica_added", None)
            if hook is not None:
                hook(view.id)
        self.play(requests(WARM, self.rng, 0))

    def play(self, batch: list[RouteRequest]) -> float:
        choose, views = self.strategy.choose, self.views
        started = time.process_time()
        chosen = [choose(request, views) for request in batch]
        elapsed = time.process_time() - started
        finished = getattr(self.strategy, "on_request_finished", None)
        if finished is not None:
            for request, view in zip(batch, chosen, strict=True):
                assert view is not None
                finished(request, Outcome(view.id, True, 0.05 + self.rng.random() * 0.2))
        return elapsed

    def round(self) -> None:
        self.rounds += 1
        # Other strategies ran since: warm the caches again first, as consecutive rounds had.
        self.play(requests(REWARM, self.rng, self.rounds * 100_000 + 50_000))
        batch = requests(TIMED, self.rng, self.rounds * 100_000)
        self.best = min(self.best, self.play(batch) / len(batch))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", action="append", help="default: every registered one")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    failed = []
    print(
        f"{'strategy':<20}"
        + "".join(f"{f'{n} cand. (<= {t:g} us)':>24}" for n, t in TARGETS_US.items())
    )
    names = args.strategy or available()
    timed = {
        (name, count): Timed(load(name), candidates(count, random.Random(count)))
        for name in names
        for count in TARGETS_US
    }
    # Rounds interleaved over all strategies, so that a burst of other work on a shared
    # machine costs each of them a round rather than one of them all its rounds.
    for _ in range(args.repeats):
        for each in timed.values():
            each.round()
    for name in names:
        cells = []
        for count, target in TARGETS_US.items():
            cost = timed[name, count].best * 1e6
            verdict = "pass" if cost <= target else "FAIL"
            if cost > target:
                failed.append(f"{name}@{count}")
            cells.append(f"{cost:14.2f} us {verdict:>5}")
        print(f"{name:<20}" + "".join(f"{cell:>24}" for cell in cells), flush=True)
    print("all within target" if not failed else f"over target: {', '.join(failed)}")


if __name__ == "__main__":
    main()
