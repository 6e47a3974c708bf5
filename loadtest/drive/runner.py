"""Drive a target with a schedule: open loop by default, closed loop for a fixed concurrency.

Open loop: each request leaves at its scheduled time whatever the server does (no coordinated
omission); how late the generator actually sent it is recorded as lag. When the generator's own
p99 lag exceeds 5 ms the figures describe the client more than the server: `RunResult.lag.ok`
says so, and `loadtest run` prints the warning. The read side is watched the same way: how
long arriving bytes wait before the event loop stamps them (`RunResult.read_delay`, sampled by
loadtest/drive/readdelay.py), with the same 5 ms budget.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np

from loadtest.drive.client import Client
from loadtest.drive.progress import ProgressSink, Snapshot
from loadtest.drive.readdelay import ReadDelayProbe
from loadtest.drive.records import RequestRecord
from loadtest.workload.schedule import Schedule, ScheduledRequest

LAG_BUDGET_S = 0.005
# Sleep only when the next send is further away than this; closer ones are sent right away.
_SPIN_S = 0.0002

T = TypeVar("T")
OnTick = Callable[[Snapshot], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class LagStats:
    """How late the generator sent requests, in seconds."""

    p50_s: float
    p99_s: float
    max_s: float

    @property
    def ok(self) -> bool:
        return self.p99_s <= LAG_BUDGET_S

    @classmethod
    def of(cls, lags: list[float]) -> LagStats:
        if not lags:
            return cls(0.0, 0.0, 0.0)
        p50, p99 = np.percentile(np.asarray(lags), [50, 99])
        return cls(float(p50), float(p99), float(max(lags)))


@dataclass(frozen=True)
class RunResult:
    target_url: str
    schedule: Schedule = field(repr=False)
    # Sorted by request index.
    records: list[RequestRecord] = field(repr=False)
    started_at: datetime
    duration_s: float
    lag: LagStats
    closed_loop: bool
    # Stopped before the schedule's end (see run_schedule's `stop`).
    interrupted: bool = False
    # How long arriving bytes waited for the event loop (chunk timestamps are that late).
    read_delay: LagStats = field(default_factory=lambda: LagStats(0.0, 0.0, 0.0))

    @property
    def errors(self) -> int:
        return sum(1 for r in self.records if not r.ok)


class _Tracker:
    """Counts for progress snapshots, updated as requests start and end."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.sent = 0
        self.records: list[RequestRecord] = []
        self.recent_ttft: deque[float] = deque(maxlen=200)
        self.recent_lag: deque[float] = deque(maxlen=1000)
        self.errors = 0
        # (time, requests done) at each snapshot, for the recent completion rate.
        self.history: deque[tuple[float, int]] = deque()

    def finished(self, record: RequestRecord) -> None:
        self.records.append(record)
        self.recent_lag.append(record.lag_s)
        if record.error_kind is not None:
            self.errors += 1
        if record.ttft_s is not None:
            self.recent_ttft.append(record.ttft_s)

    def snapshot(self, elapsed: float) -> Snapshot:
        """Cheap enough to take while sending: nothing here walks all the records."""
        now, done = time.perf_counter(), len(self.records)
        self.history.append((now, done))
        while len(self.history) > 2 and now - self.history[1][0] >= 5.0:
            self.history.popleft()
        then, done_then = self.history[0]
        return Snapshot(
            elapsed_s=elapsed,
            total=self.total,
            sent=self.sent,
            done=done,
            errors=self.errors,
            in_flight=self.sent - done,
            rate=(done - done_then) / (now - then) if now > then else 0.0,
            ttft_p50_s=float(np.median(self.recent_ttft)) if self.recent_ttft else None,
            lag_p99_s=(float(np.percentile(self.recent_lag, 99)) if self.recent_lag else None),
        )


async def run_schedule(
    target_url: str,
    schedule: Schedule,
    *,
    api_key: str | None = None,
    progress: ProgressSink | None = None,
    on_tick: OnTick | None = None,
    tick_s: float = 0.5,
    client_factory: Callable[..., Client] = Client,
    stop: asyncio.Event | None = None,
) -> RunResult:
    """Send `schedule` to `target_url` (a base URL; /v1 is added when missing) and measure it.

    Never raises for what the target does: a target that is down or fails answers with error
    records. `progress.update` and `on_tick` (sync or async) get a Snapshot every `tick_s`.
    Setting `stop` ends the run early: nothing more is sent, requests in flight are waited for
    (each has its timeout), and the result says `interrupted`. `client_factory` exists for
    benchmarks that compare HTTP clients.
    """
    tracker = _Tracker(len(schedule.requests))
    started_at = datetime.now(UTC)
    # A full collection walks every live object (a long schedule has a million): freeze what
    # exists now so that collections during the run stay short and do not delay sends.
    gc.collect()
    gc.freeze()
    probe = ReadDelayProbe()
    try:
        async with probe, client_factory(target_url, schedule, api_key=api_key) as client:
            start = time.perf_counter()
            ticker = asyncio.create_task(_tick(tracker, start, tick_s, progress, on_tick))
            try:
                if schedule.closed_loop:
                    await _closed_loop(client, schedule, tracker, start, stop)
                else:
                    await _OpenLoop(client, schedule, tracker, start, stop).run()
            finally:
                ticker.cancel()
                await asyncio.gather(ticker, return_exceptions=True)
            duration = time.perf_counter() - start
            if progress is not None:
                progress.update(tracker.snapshot(duration))
    finally:
        gc.unfreeze()
        if progress is not None:
            progress.close()
    records = sorted(tracker.records, key=lambda r: r.index)
    return RunResult(
        target_url=target_url,
        schedule=schedule,
        records=records,
        started_at=started_at,
        duration_s=duration,
        lag=LagStats.of([r.lag_s for r in records]),
        closed_loop=schedule.closed_loop,
        interrupted=stop is not None and stop.is_set(),
        read_delay=LagStats.of(probe.delays),
    )


class _OpenLoop:
    """Sends each request at its time. Due requests go out when the dispatcher wakes from its
    sleep, and also between two reads of responses: under a burst of streamed chunks the loop
    may be busy for milliseconds before the sleeping dispatcher gets its turn."""

    def __init__(
        self,
        client: Client,
        schedule: Schedule,
        tracker: _Tracker,
        start: float,
        stop: asyncio.Event | None,
    ):
        self.client = client
        self.requests = schedule.requests
        self.tracker = tracker
        self.start = start
        self.stop = stop
        self.next = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.wake: asyncio.Future[None] | None = None

    def send_due(self) -> None:
        requests, clock = self.requests, time.perf_counter
        if self.stop is not None and self.stop.is_set():
            return
        while self.next < len(requests):
            request = requests[self.next]
            if self.start + request.at_s - clock() > _SPIN_S:
                return
            self.next += 1
            # The request is written here, on time; the task only waits for its answer.
            task = asyncio.create_task(self._measure(request))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            self.tracker.sent += 1

    def _measure(self, request: ScheduledRequest) -> Coroutine[Any, Any, None]:
        measured = self.client.start(request, run_start=self.start)

        async def wait() -> None:
            self.tracker.finished(await measured)

        return wait()

    async def _sleep(self, delay: float) -> None:
        """asyncio.sleep that `stop` cuts short."""
        loop = asyncio.get_running_loop()
        self.wake = loop.create_future()
        timer = loop.call_later(delay, _resolve, self.wake)
        try:
            await self.wake
        finally:
            timer.cancel()

    def _stopped(self) -> None:
        if self.wake is not None:
            _resolve(self.wake)

    async def run(self) -> None:
        self.client.call_after_reads(self.send_due)
        watcher = asyncio.create_task(self._watch_stop())
        try:
            while self.next < len(self.requests):
                if self.stop is not None and self.stop.is_set():
                    break
                delay = self.start + self.requests[self.next].at_s - time.perf_counter()
                if delay > _SPIN_S:
                    await self._sleep(delay)
                self.send_due()
            self.client.call_after_reads(None)
            while self.tasks:
                await asyncio.gather(*self.tasks)
        finally:
            watcher.cancel()
            self.client.call_after_reads(None)
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(watcher, *self.tasks, return_exceptions=True)

    async def _watch_stop(self) -> None:
        if self.stop is not None:
            await self.stop.wait()
            self._stopped()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _closed_loop(
    client: Client,
    schedule: Schedule,
    tracker: _Tracker,
    start: float,
    stop: asyncio.Event | None,
) -> None:
    queue = iter(schedule.requests)
    deadline = start + schedule.duration_s if schedule.duration_s else None

    async def worker() -> None:
        for request in queue:
            if deadline is not None and time.perf_counter() >= deadline:
                return
            if stop is not None and stop.is_set():
                return
            tracker.sent += 1
            tracker.finished(await client.send(request, run_start=start, closed_loop=True))

    assert schedule.concurrency is not None
    workers = [asyncio.create_task(worker()) for _ in range(schedule.concurrency)]
    try:
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


async def _tick(
    tracker: _Tracker,
    start: float,
    tick_s: float,
    progress: ProgressSink | None,
    on_tick: OnTick | None,
) -> None:
    while True:
        await asyncio.sleep(tick_s)
        # Records pile up during a run; keep them out of full collections too (short-lived
        # cycles are still collected young; the rest once the run is over).
        gc.freeze()
        snapshot = tracker.snapshot(time.perf_counter() - start)
        if progress is not None:
            progress.update(snapshot)
        if on_tick is not None:
            try:
                result = on_tick(snapshot)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # a broken observer must not stop the run
                logging.getLogger(__name__).exception("on_tick failed")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on uvloop when it is installed (less CPU per request and chunk)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)
