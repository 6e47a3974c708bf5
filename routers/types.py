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


def others_at_scrape(metrics: "Metrics | None", in_flight_at_scrape: int) -> float:
    """Requests of other senders (other gateways, direct clients) a scrape showed: its
    running + waiting less this gateway's in flight when it was taken, at least 0."""
    if metrics is None:
        return 0.0
    other = metrics.running + metrics.waiting - in_flight_at_scrape
    return other if other > 0 else 0.0


@dataclass(frozen=True, slots=True)
class ReplicaView:
    """A read-only snapshot of one candidate replica at decision time."""

    id: str
    url: str
    models: tuple[str, ...]
    healthy: bool
    in_flight: int
    # Requests this gateway sent to the replica, and requests of its that finished there,
    # since `metrics` was scraped (replicas are scraped at different moments, so only
    # their difference compares across replicas).
    dispatched_since_scrape: int = 0
    finished_since_scrape: int = 0
    # Requests this gateway had in flight there when `metrics` was scraped.
    in_flight_at_scrape: int = 0
    # In-flight requests with no first byte back yet, and their estimated prompt tokens.
    awaiting_first_byte: int = 0
    awaiting_prompt_tokens: int = 0
    metrics: Metrics | None = None
    # Seconds since `metrics` was scraped; None when never scraped.
    metrics_age: float | None = None
    # True when the last scrape is too old or failed: treat metrics as unknown.
    metrics_stale: bool = True
    # Other senders' requests there at the scrape: its running + waiting less
    # `in_flight_at_scrape`, at least 0 (0 without metrics). The pool computes it once a
    # scrape, not once a request; negative here: computed from the fields above.
    others_at_scrape: float = -1.0
    # When the engine step under way on the replica should end: when its last step's tokens
    # came (a stream's chunks come a burst a step) plus its decode steps' average length.
    # 0.0, a time long past, when not known: no stream of this gateway's open there, or no
    # decode step measured yet.
    step_ends_at: float = 0.0

    def __post_init__(self) -> None:
        if self.metrics is None and not self.metrics_stale:
            object.__setattr__(self, "metrics_stale", True)  # no scrape: nothing fresh
        if self.others_at_scrape < 0:
            others = others_at_scrape(self.metrics, self.in_flight_at_scrape)
            object.__setattr__(self, "others_at_scrape", others)


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """Facts about the request being routed. New fields get defaults."""

    model: str
    stream: bool = False
    # Estimated from the prompt's text (the gateway) or its tokens (the simulator).
    prompt_tokens_estimate: int = 0
    max_tokens: int | None = None
    request_id: str = ""
    # Chained hashes of the prompt's leading blocks: equal hashes at position i mean equal
    # prompts up to the end of block i (see routers.prompt).
    prefix_hashes: tuple[int, ...] = ()
    # Who is talking: the request's `user` field or its x-session-id header.
    session: str | None = None
    # Seconds on the clock the pool runs on (the gateway's monotonic clock, the simulator's
    # virtual one) when the request is routed; None when the caller gives none. A strategy
    # reads no clock of its own: this is its time.
    now: float | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a routed request ended on the replica it was sent to."""

    replica_id: str
    # Answered with a success status and, for a stream, relayed to its end.
    ok: bool
    # Seconds from sending the request to the replica's first response byte, when one came.
    ttfb_s: float | None = None


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
    # Whether `choose` reads RouteRequest.prefix_hashes. Hashing a prompt's blocks costs
    # the gateway ~0.3 µs a block (18.5 µs for a 4.3 kB prompt's 64); a strategy that says
    # False gets () instead. Absent (or True), the gateway computes them.
    reads_prefix_hashes = True

    def on_request_finished(self, request: RouteRequest, outcome: Outcome) -> None:
        return None

    def on_replica_added(self, replica_id: str) -> None:
        return None

    def on_replica_removed(self, replica_id: str) -> None:
        return None
