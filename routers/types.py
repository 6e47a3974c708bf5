"""What a strategy sees and what it must provide.

A strategy is pure: it reads frozen views and returns one of them. No I/O, no
clock reads, so the gateway and the simulator's virtual-time engine can run the
very same object.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Metrics:
    """Engine metrics from one scrape of a replica's /metrics."""

    waiting: float
    running: float
    kv_usage: float | None = None
    prefix_hit_rate: float | None = None


@dataclass(frozen=True, slots=True)
class ReplicaView:
    """A read-only snapshot of one candidate replica at decision time."""

    id: str
    url: str
    models: tuple[str, ...]
    healthy: bool
    in_flight: int
    # Requests this gateway sent to the replica since `metrics` was scraped.
    dispatched_since_scrape: int = 0
    metrics: Metrics | None = None
    # Seconds since `metrics` was scraped; None when never scraped.
    metrics_age: float | None = None
    # True when the last scrape is too old or failed: treat metrics as unknown.
    metrics_stale: bool = True


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """Facts about the request being routed. New fields get defaults."""

    model: str
    stream: bool = False
    prompt_tokens_estimate: int = 0
    max_tokens: int | None = None
    request_id: str = ""


@runtime_checkable
class Strategy(Protocol):
    """Picks one replica among healthy candidates that serve the model.

    Returns None when no candidate fits; the gateway answers 503 then.
    The hooks are optional: `StrategyBase` gives no-op defaults.
    """

    name: str

    def choose(
        self, request: RouteRequest, candidates: Sequence[ReplicaView]
    ) -> ReplicaView | None: ...


class StrategyBase:
    """No-op lifecycle hooks, for strategies that need none of them."""

    name = "base"

    def on_request_finished(self, request: RouteRequest, replica_id: str, ok: bool) -> None:
        return None

    def on_replica_added(self, replica_id: str) -> None:
        return None

    def on_replica_removed(self, replica_id: str) -> None:
        return None
