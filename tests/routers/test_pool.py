from collections.abc import Sequence
from typing import Any

from gateway.settings import GatewaySettings
from gateway.state import Gateway
from routers import Metrics, ReplicaView, RouteRequest
from routers.pool import Replica, ReplicaPool
from routers.types import StrategyBase
from turnout.logs import get_logger


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def pool_of(*ids: str, clock: Clock | None = None) -> ReplicaPool:
    replicas = [Replica(id=i, url=f"http://127.0.0.1:1/{i}", models=("m",)) for i in ids]
    return ReplicaPool(replicas, clock=clock or Clock(), backoff_base=1.0, backoff_max=4.0)


def test_listener_hears_each_ejection_and_restoration_once() -> None:
    pool = pool_of("a", "b")
    heard: list[tuple[str, bool]] = []
    pool.set_listener(lambda rid, up: heard.append((rid, up)))
    pool.mark_down("a", "refused")
    pool.mark_down("a", "refused again")  # already out: no second event
    pool.mark_up("a")
    pool.mark_up("a")  # already in: no event
    assert heard == [("a", False), ("a", True)]
    assert [v.id for v in pool.candidates("m")] == ["a", "b"]


def test_backoff_doubles_up_to_its_cap() -> None:
    clock = Clock()
    pool = pool_of("a", clock=clock)
    delays = []
    for _ in range(4):
        pool.mark_down("a", "x")
        delays.append(pool.get("a").retry_at - clock.now)
    assert delays == [1.0, 2.0, 4.0, 4.0]
    assert not pool.due_for_check("a")
    clock.now += 4.0
    assert pool.due_for_check("a")


def test_a_scrape_keeps_crediting_what_was_sent_while_it_ran() -> None:
    pool = pool_of("a")
    for _ in range(3):
        pool.acquire("a")
    mark = pool.scrape_mark("a")
    pool.acquire("a")
    pool.acquire("a")
    pool.record_metrics("a", Metrics(waiting=1, running=2), mark=mark)
    view = pool.candidates("m")[0]
    assert view.dispatched_since_scrape == 2
    assert view.in_flight == 5
    assert not view.metrics_stale


def test_a_scrape_remembers_how_many_of_ours_were_in_flight_as_it_began() -> None:
    # So that a strategy can tell its own requests in the scrape from other senders':
    # 3 were ours when the scrape began; 2 were sent and 1 finished while it ran.
    pool = pool_of("a")
    for _ in range(3):
        pool.acquire("a")
    mark = pool.scrape_mark("a")
    pool.acquire("a")
    pool.acquire("a")
    pool.release("a")
    pool.record_metrics("a", Metrics(waiting=0, running=9), mark=mark)
    view = pool.candidates("m")[0]
    assert (view.in_flight_at_scrape, view.in_flight) == (3, 4)
    # A scrape recorded without a mark counts from the moment it is recorded.
    pool.record_metrics("a", Metrics(waiting=0, running=4))
    assert pool.candidates("m")[0].in_flight_at_scrape == 4


class Recording(StrategyBase):
    name = "recording"

    def __init__(self, fail: bool = False) -> None:
        self.events: list[tuple[str, str]] = []
        self.fail = fail

    def choose(
        self, request: RouteRequest, candidates: Sequence[ReplicaView]
    ) -> ReplicaView | None:
        return candidates[0] if candidates else None

    def on_replica_added(self, replica_id: str) -> None:
        self.events.append(("added", replica_id))

    def on_replica_removed(self, replica_id: str) -> None:
        if self.fail:
            raise RuntimeError("plugin bug")
        self.events.append(("removed", replica_id))


def gateway_with(strategy: Recording, pool: ReplicaPool) -> Gateway:
    settings = GatewaySettings(replicas=["http://127.0.0.1:1"])
    stub: Any = None  # the hooks touch neither the HTTP session nor telemetry
    gw = Gateway(settings, pool, stub, stub, strategy, get_logger("test"))
    pool.set_listener(gw.replica_changed)
    return gw


def test_strategy_hooks_follow_the_pool() -> None:
    pool = pool_of("a", "b")
    strategy = Recording()
    gw = gateway_with(strategy, pool)
    gw.announce_replicas()
    pool.mark_down("b", "refused")
    pool.mark_up("b")
    assert strategy.events == [("added", "a"), ("added", "b"), ("removed", "b"), ("added", "b")]


def test_a_failing_hook_does_not_break_health_handling() -> None:
    pool = pool_of("a")
    gateway_with(Recording(fail=True), pool)
    assert pool.mark_down("a", "refused") is True
    assert not pool.get("a").healthy
