import asyncio
import itertools
import time
from typing import Any

import httpx

from gateway.periodic import ProbeFailed, describe_error, every_replica
from gateway.upstream import Upstream
from routers.pool import ReplicaPool


class _Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def exception(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))


def make_pool(*names: str) -> ReplicaPool:
    return ReplicaPool(Upstream(id=n, url=f"http://{n}", models=("m",)) for n in names)


async def test_a_crashing_round_is_logged_and_the_loop_goes_on() -> None:
    rounds: dict[str, int] = {"a": 0, "b": 0}

    async def round_for(replica_id: str) -> None:
        rounds[replica_id] += 1
        if replica_id == "a":
            raise RuntimeError("bug in a round")

    log = _Log()
    task = asyncio.create_task(
        every_replica(make_pool("a", "b"), round_for, lambda _: 0.01, what="probe", log=log)
    )
    await asyncio.sleep(0.2)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert rounds["a"] >= 5 and rounds["b"] >= 5
    assert log.events and all(e == ("probe_crashed", {"replica": "a"}) for e in log.events)


async def test_loops_start_spread_and_keep_their_period() -> None:
    starts: dict[str, list[float]] = {"a": [], "b": [], "c": [], "d": []}

    async def round_for(replica_id: str) -> None:
        starts[replica_id].append(time.monotonic())

    t0 = time.monotonic()
    task = asyncio.create_task(
        every_replica(
            make_pool(*starts), round_for, lambda _: 0.2, what="p", log=_Log(), spread_over=0.2
        )
    )
    await asyncio.sleep(0.5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    firsts = [starts[name][0] - t0 for name in sorted(starts)]
    # Replica i starts no sooner than 0.05 * i (sleeps end late under load, never early).
    assert firsts == sorted(firsts)
    assert all(first >= 0.05 * i - 0.005 for i, first in enumerate(firsts))
    gaps = [b - a for times in starts.values() for a, b in itertools.pairwise(times)]
    assert gaps and all(gap >= 0.195 for gap in gaps)


def test_describe_error_says_what_went_wrong_in_a_few_words() -> None:
    assert describe_error(TimeoutError()) == "timeout"
    assert describe_error(httpx.ReadTimeout("slow")) == "timeout"
    assert describe_error(ProbeFailed("/health answered HTTP 503")) == "/health answered HTTP 503"
    assert describe_error(ConnectionRefusedError("refused")) == "ConnectionRefusedError: refused"
    assert describe_error(ValueError()) == "ValueError"
    assert len(describe_error(ValueError("x" * 500))) == 200


async def test_loops_follow_the_pool_membership() -> None:
    rounds: dict[str, int] = {}

    async def round_for(replica_id: str) -> None:
        rounds[replica_id] = rounds.get(replica_id, 0) + 1

    pool = make_pool("a")
    task = asyncio.create_task(every_replica(pool, round_for, lambda _: 0.01, what="p", log=_Log()))
    await asyncio.sleep(0.1)
    pool.add(Upstream(id="b", url="http://b"))
    await asyncio.sleep(0.1)
    pool.remove("a")
    await asyncio.sleep(0.02)
    after_removal = rounds["a"]
    await asyncio.sleep(0.1)
    pool.remove("b")
    empty_for = rounds["b"]
    await asyncio.sleep(0.05)
    assert not task.done()  # an empty pool does not end the loops' owner
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert rounds["b"] >= 3 and rounds["b"] == empty_for
    assert rounds["a"] == after_removal
