"""Several workers' per-replica gauges: each worker's pool published to a file, a scrape on
any worker adding them up (in-flight summed, health the worst view, age the oldest scrape)."""

import asyncio
import os
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.shared_view import Publisher, SharedPoolCollector, forget
from gateway.upstream import Upstream
from routers import Metrics
from routers.pool import ReplicaPool


def pool(*names: str) -> ReplicaPool[Upstream]:
    return ReplicaPool([Upstream(n, f"http://{n}:1", ("m",)) for n in names])


def gauges(collector: SharedPoolCollector) -> dict[tuple[str, str], float]:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (s.name, s.labels["replica"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_scrape_adds_up_every_workers_pool(tmp_path: Path) -> None:
    mine, other, third = pool("a", "b"), pool("a", "b"), pool("a", "b")
    for _ in range(2):
        mine.acquire("a")
    for _ in range(3):
        other.acquire("a")
    other.acquire("b")
    third.acquire("b")
    other.mark_down("b", "test")
    mine.record_metrics("a", Metrics(waiting=0, running=1), at=99.0)
    other.record_metrics("a", Metrics(waiting=0, running=1), at=97.0)
    Publisher(other, tmp_path, 2).publish()
    Publisher(third, tmp_path, 3).publish()
    # A file half written by a worker being killed is skipped, not fatal.
    (tmp_path / "pool_4.json").write_bytes(b'{"a": [1, tr')
    collector = SharedPoolCollector(mine, tmp_path, 1, clock=lambda: 100.0)
    got = gauges(collector)
    assert got[("turnout_in_flight", "a")] == 5
    assert got[("turnout_in_flight", "b")] == 2
    assert got[("turnout_replica_healthy", "a")] == 1
    assert got[("turnout_replica_healthy", "b")] == 0  # ejected by one worker
    assert got[("turnout_replica_metrics_age_seconds", "a")] == 3.0  # the oldest view
    assert ("turnout_replica_metrics_age_seconds", "b") not in got  # never scraped

    # This worker's own part is read fresh, not from its (stale) file.
    Publisher(mine, tmp_path, 1).publish()
    mine.release("a")
    assert gauges(collector)[("turnout_in_flight", "a")] == 4
    # A dead worker's part goes with it.
    forget(tmp_path, 2)
    forget(tmp_path, 2)  # twice is harmless
    assert gauges(collector)[("turnout_in_flight", "a")] == 1
    assert gauges(collector)[("turnout_replica_healthy", "b")] == 1


def test_the_publisher_writes_on_change_and_removes_its_file(tmp_path: Path) -> None:
    replicas = pool("a")
    publisher = Publisher(replicas, tmp_path, os.getpid())
    path = tmp_path / f"pool_{os.getpid()}.json"

    async def run_briefly() -> None:
        task = asyncio.create_task(publisher.run(interval=0.01))
        await asyncio.sleep(0.05)
        first = path.stat().st_mtime_ns
        await asyncio.sleep(0.05)
        assert path.stat().st_mtime_ns == first  # nothing changed: not rewritten
        replicas.acquire("a")
        for _ in range(100):
            await asyncio.sleep(0.01)
            if b'"a":[1,' in path.read_bytes():
                break
        assert b'"a":[1,' in path.read_bytes()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(run_briefly())
    assert not path.exists()
    assert not list(tmp_path.iterdir())
