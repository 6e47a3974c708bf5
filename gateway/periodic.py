"""One loop per replica, forever: the shape the metrics poller and the health checker share.

Each replica gets its own task, so one that hangs delays no other; a crash in one round is
logged and the loop goes on (a replica must never silently stop being polled or checked).
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from routers.pool import ReplicaPool


class ProbeFailed(Exception):
    """A probe got an answer that means failure; the message says which answer."""


async def every_replica(
    pool: ReplicaPool[Any],
    round_for: Callable[[str], Awaitable[object]],
    period_of: Callable[[str], float],
    *,
    what: str,
    log: Any,
    spread_over: float = 0.0,
) -> None:
    """Run `round_for(replica id)` for every replica of `pool`, each on its own loop, until
    cancelled. A round starts `period_of(replica id)` seconds after the previous one started
    (at once if that one overran). Loops start spread evenly over `spread_over` seconds.
    Replicas that join the pool later get a loop at once; one that leaves loses its loop."""
    loops: dict[str, asyncio.Task[None]] = {}
    async with asyncio.TaskGroup() as group:

        def start(replica_id: str, offset: float) -> None:
            loops[replica_id] = group.create_task(
                _loop(replica_id, round_for, period_of, offset, what, log),
                name=f"{what} {replica_id}",
            )

        def changed(replica_id: str, present: bool) -> None:
            task = loops.pop(replica_id, None)
            if task is not None:
                task.cancel()
            if present:
                # Whoever added it ran its first round (gateway/membership.py).
                start(replica_id, period_of(replica_id))

        members = [r for r in pool if not r.leaving]
        for i, replica in enumerate(members):
            start(replica.id, spread_over * i / len(members))
        unwatch = pool.watch(changed)
        try:
            # Keeps the group open while the pool is empty; ends only when cancelled.
            await asyncio.Event().wait()
        finally:
            unwatch()


async def _loop(
    replica_id: str,
    round_for: Callable[[str], Awaitable[object]],
    period_of: Callable[[str], float],
    offset: float,
    what: str,
    log: Any,
) -> None:
    await asyncio.sleep(offset)
    while True:
        started = time.monotonic()
        try:
            await round_for(replica_id)
        except Exception:  # even a failure to log must not end this replica's loop
            with contextlib.suppress(Exception):
                log.exception(f"{what}_crashed", replica=replica_id)
        await asyncio.sleep(max(0.0, period_of(replica_id) - (time.monotonic() - started)))


def describe_error(exc: BaseException) -> str:
    """A short reason for logs and /admin: "timeout", a probe's own message, or the error."""
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, ProbeFailed):
        return str(exc)
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:200]
