"""The gateway's state object: the strategy hears the pool's ejections and restorations."""

from collections.abc import Sequence
from typing import Any

from gateway.settings import GatewaySettings
from gateway.state import Gateway
from gateway.upstream import Upstream
from routers import ReplicaView, RouteRequest
from routers.pool import ReplicaPool
from routers.types import StrategyBase
from turnout.logs import get_logger


def pool_of(*ids: str) -> ReplicaPool[Upstream]:
    replicas = [Upstream(id=i, url=f"http://127.0.0.1:1/{i}", models=("m",)) for i in ids]
    return ReplicaPool(replicas, backoff_base=1.0, backoff_max=4.0)


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
