"""What a batch sends next: new tasks read from the input as needed, jobs waiting to be sent
again (due first), and the pace of sends when a rate is set."""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Iterator
from typing import NamedTuple

from loadtest.batch.tasks import Task


class Job(NamedTuple):
    """A task on its way: the attempts made so far and its deadline."""

    task: Task
    attempts: int
    deadline: float  # perf_counter time


class JobQueue:
    """Tasks to start, read from the input as needed, and jobs waiting to be sent again.
    At most `max_waiting` wait: beyond that no new task starts, so memory stays bounded when
    the target fails everything."""

    def __init__(self, tasks: Iterator[Task], deadline_s: float, max_waiting: int) -> None:
        self.tasks = tasks
        self.deadline_s = deadline_s
        self.max_waiting = max_waiting
        self.exhausted = False
        self.stopping = False
        self.heap: list[tuple[float, int, Job]] = []
        self.count = 0
        self.in_flight = 0
        self.left = 0  # jobs dropped by a stop, without a line: --resume sends them
        self.waiters: list[asyncio.Future[None]] = []

    async def take(self) -> Job | None:
        """The next job to send now; None when there is none left (or the run stops)."""
        clock = time.perf_counter
        while not self.stopping:
            now = clock()
            if self.heap and self.heap[0][0] <= now:
                self.in_flight += 1
                return heapq.heappop(self.heap)[2]
            if not self.exhausted and len(self.heap) < self.max_waiting:
                task = next(self.tasks, None)
                if task is not None:
                    self.in_flight += 1
                    return Job(task, 0, now + self.deadline_s)
                self.exhausted = True
            if self.exhausted and not self.heap and self.in_flight == 0:
                self._notify()
                return None
            await self._wait(self.heap[0][0] - now if self.heap else None)
        return None

    def again(self, job: Job, due: float) -> None:
        self.in_flight -= 1
        self.count += 1
        heapq.heappush(self.heap, (due, self.count, job))
        self._notify()

    def finished(self) -> None:
        self.in_flight -= 1
        if self.waiters:
            self._notify()

    def drop(self) -> None:
        """A job in flight ends without a line (the run is stopping)."""
        self.in_flight -= 1
        self.left += 1
        self._notify()

    def stop(self) -> None:
        self.stopping = True
        self.left += len(self.heap)
        self.heap.clear()
        self._notify()

    async def _wait(self, seconds: float | None) -> None:
        """Until `_notify` or `seconds` pass."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.waiters.append(future)
        timer = loop.call_later(seconds, _resolve, future) if seconds is not None else None
        try:
            await future
        finally:
            if timer is not None:
                timer.cancel()
            if future in self.waiters:
                self.waiters.remove(future)

    def _notify(self) -> None:
        waiters, self.waiters = self.waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(None)


class Pacer:
    """At most `rate` sends per second, in order of asking; a stop wakes every sleeper.
    Slots missed while the loop was busy are made up within `catch_up_s`, no further back."""

    def __init__(self, rate: float, catch_up_s: float = 0.5) -> None:
        self.interval = 1.0 / rate
        self.catch_up_s = catch_up_s
        self.next: float | None = None
        self.sleepers: set[asyncio.Future[None]] = set()

    async def wait(self) -> None:
        now = time.perf_counter()
        slot = now if self.next is None else max(self.next, now - self.catch_up_s)
        self.next = slot + self.interval
        if slot - now > 0.0002:
            loop = asyncio.get_running_loop()
            future = loop.create_future()
            self.sleepers.add(future)
            timer = loop.call_later(slot - now, _resolve, future)
            try:
                await future
            finally:
                timer.cancel()
                self.sleepers.discard(future)

    def wake_all(self) -> None:
        for future in list(self.sleepers):
            _resolve(future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
