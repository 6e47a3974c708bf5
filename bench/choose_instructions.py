"""Instructions one `choose` executes, per strategy, with 6 candidates (needs valgrind).

CPU time on a shared machine moves by 10% from run to run; the count of instructions
callgrind sees does not, so it tells whether a change to a strategy's hot path saves
anything. Each strategy is warmed on 5,000 requests as in `bench/choose_bench.py` (the same
requests and candidates), then run twice under callgrind, choosing 0 and 2,000 times: the
difference over 2,000 is the cost of a choice. Pass `--without` to replace a part by a
no-op and see what it costs (it changes what the rest does next, so take it as a guide):
`index.insert`, `index.cached`, `pending.sent` (lmetric), `progress.sent`.

    .venv/bin/python bench/choose_instructions.py [--strategy prefix_least_work]
"""

import argparse
import os
import random
import re
import subprocess
import sys

import choose_bench

from routers import Outcome
from routers.registry import available, load

TIMED = 2000
PARTS = {
    "index.insert": ("index", "insert", {}),
    "index.cached": ("index", "cached", {}),
    "pending.sent": ("pending", "sent", None),
    "progress.sent": ("progress", "sent", None),
}


def play(name: str, count: int, without: str | None) -> None:
    """Warm `name`, then choose `count` times (what callgrind measures)."""
    rng = random.Random(7)
    views = choose_bench.candidates(6, random.Random(6))
    strategy = load(name)
    for view in views:
        strategy.on_replica_added(view.id)
    for request in choose_bench.requests(choose_bench.WARM, rng, 0):
        view = strategy.choose(request, views)
        assert view is not None
        strategy.on_request_finished(request, Outcome(view.id, True, 0.1))
    timed = choose_bench.requests(TIMED, rng, 100_000)
    if without is not None:
        owner, method, result = PARTS[without]
        if not hasattr(strategy, owner):
            raise SystemExit(f"{name} has no {owner}")
        setattr(getattr(strategy, owner), method, lambda *args: result)
    for request in timed[:count]:
        strategy.choose(request, views)


def instructions(name: str, count: int, without: str | None) -> int:
    command = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, __file__, "--play", name, str(count), without or "",
    ]  # fmt: skip
    # A fixed string hashing: the replicas' ids land in other dictionary slots otherwise,
    # and the two runs' counts differ by a few hundred a choice.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"no count from callgrind for {name}:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    if sys.argv[1:2] == ["--play"]:
        play(sys.argv[2], int(sys.argv[3]), sys.argv[4] or None)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", action="append", help="default: every registered one")
    parser.add_argument("--without", choices=sorted(PARTS), help="a part replaced by a no-op")
    args = parser.parse_args()
    for name in args.strategy or available():
        base = instructions(name, 0, args.without)
        cost = (instructions(name, TIMED, args.without) - base) // TIMED
        print(f"{name:<20} {cost:>8,} instructions a choice", flush=True)


if __name__ == "__main__":
    main()
