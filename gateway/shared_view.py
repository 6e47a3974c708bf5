"""Several workers: the per-replica gauges of /metrics, gateway-wide.

Each worker has its own pool, so the scrape-time gauges of one worker (telemetry's pool
collector) would show a fraction of the truth. Instead every worker writes its pool's
state (per replica: in-flight, healthy, when it last scraped it) to a small file in the
shared metrics directory, every PUBLISH_INTERVAL_S and only when it changed: nothing per
request. A /metrics scrape, on whichever worker, reads its own pool fresh and the others'
files, and gives:

- turnout_in_flight: the sum over workers;
- turnout_replica_healthy: the worst view, 0 when any worker has ejected the replica;
- turnout_replica_metrics_age_seconds: the oldest of the workers' last scrapes.

The parent removes a dead worker's file (`forget`), a worker its own when it stops.
"""

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from routers.pool import ReplicaPool

# How stale another worker's part of the gauges may be.
PUBLISH_INTERVAL_S = 0.1
_PREFIX = "pool_"

# replica id -> (in flight, healthy, scraped at on the monotonic clock, or None)
Snapshot = dict[str, tuple[int, bool, float | None]]


def _path(directory: Path, pid: int) -> Path:
    return directory / f"{_PREFIX}{pid}.json"


def snapshot(pool: ReplicaPool[Any]) -> Snapshot:
    return {r.id: (r.in_flight, r.healthy, r.scraped_at) for r in pool}


def forget(directory: Path, pid: int) -> None:
    """Drop a worker's part (it stopped or died)."""
    with contextlib.suppress(FileNotFoundError):
        _path(directory, pid).unlink()


class Publisher:
    """Writes this worker's snapshot when it changed (atomically: readers never see half)."""

    def __init__(self, pool: ReplicaPool[Any], directory: Path, pid: int) -> None:
        self._pool = pool
        self._path = _path(directory, pid)
        self._tmp = directory / f".{_PREFIX}{pid}.tmp"
        self._last: bytes | None = None

    def publish(self) -> None:
        data = orjson.dumps(snapshot(self._pool))
        if data == self._last:
            return
        self._tmp.write_bytes(data)
        os.replace(self._tmp, self._path)
        self._last = data

    async def run(self, interval: float = PUBLISH_INTERVAL_S) -> None:
        """Publish until cancelled; the file goes with the worker."""
        try:
            while True:
                self.publish()
                await asyncio.sleep(interval)
        finally:
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()


def _read_others(directory: Path, own_pid: int) -> list[Snapshot]:
    found = []
    for path in directory.glob(f"{_PREFIX}*.json"):
        if path.name == f"{_PREFIX}{own_pid}.json":
            continue
        try:
            raw = orjson.loads(path.read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            continue  # the worker stopped in between
        found.append({rid: (int(v[0]), bool(v[1]), v[2]) for rid, v in raw.items()})
    return found


class SharedPoolCollector(Collector):
    """The per-replica gauges over every worker: this one's pool, the others' files."""

    def __init__(
        self,
        pool: ReplicaPool[Any],
        directory: Path,
        pid: int,
        clock: Callable[[], float],
    ) -> None:
        self._pool = pool
        self._directory = directory
        self._pid = pid
        self._clock = clock

    def collect(self) -> Iterable[Metric]:
        views = [snapshot(self._pool), *_read_others(self._directory, self._pid)]
        in_flight: dict[str, int] = {}
        healthy: dict[str, bool] = {}
        oldest: dict[str, float] = {}
        for view in views:
            for rid, (count, ok, scraped_at) in view.items():
                in_flight[rid] = in_flight.get(rid, 0) + count
                healthy[rid] = healthy.get(rid, True) and ok
                if scraped_at is not None:
                    oldest[rid] = min(oldest.get(rid, scraped_at), scraped_at)
        now = self._clock()
        families = _families()
        for rid in sorted(in_flight):
            families[0].add_metric([rid], in_flight[rid])
            families[1].add_metric([rid], 1.0 if healthy[rid] else 0.0)
            if rid in oldest:
                families[2].add_metric([rid], max(0.0, now - oldest[rid]))
        return families


def _families() -> list[GaugeMetricFamily]:
    return [
        GaugeMetricFamily(
            "turnout_in_flight",
            "Requests open on the replica (all workers).",
            labels=["replica"],
        ),
        GaugeMetricFamily(
            "turnout_replica_healthy",
            "1 if the replica takes traffic from every worker, else 0.",
            labels=["replica"],
        ),
        GaugeMetricFamily(
            "turnout_replica_metrics_age_seconds",
            "Seconds since the replica's /metrics was last scraped (the oldest of the workers').",
            labels=["replica"],
        ),
    ]
