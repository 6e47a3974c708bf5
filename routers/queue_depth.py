"""Least queued replica, counting what this gateway sent since the last scrape.

Trusting the scrape alone herds: for a whole poll interval every request goes to
the replica that looked emptiest. So each replica's scraped `waiting` is credited
with the requests dispatched to it since that scrape. When any candidate's metrics
are stale or missing they are unknown, not idle, and all candidates are compared
by gateway-local in-flight counts instead, so the scores stay on one scale.
"""

import random
from collections.abc import Sequence

from routers.types import ReplicaView, RouteRequest, StrategyBase


def _score(view: ReplicaView, use_metrics: bool) -> tuple[float, float]:
    if use_metrics and view.metrics is not None:
        return (view.metrics.waiting + view.dispatched_since_scrape, view.metrics.running)
    return (float(view.in_flight), 0.0)


class QueueDepth(StrategyBase):
    name = "queue_depth"

    def __init__(self, seed: int | None = None) -> None:
        self._random = random.Random(seed)

    def choose(
        self, request: RouteRequest, candidates: Sequence[ReplicaView]
    ) -> ReplicaView | None:
        if not candidates:
            return None
        use_metrics = all(v.metrics is not None and not v.metrics_stale for v in candidates)
        scores = [_score(view, use_metrics) for view in candidates]
        best = min(scores)
        tied = [view for view, score in zip(candidates, scores, strict=True) if score == best]
        return tied[0] if len(tied) == 1 else self._random.choice(tied)
