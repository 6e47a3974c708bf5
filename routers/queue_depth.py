"""Fewest requests on the replica (queued or running), as of the last scrape and since.

Trusting the scrape alone herds: for a whole poll interval every request goes to the replica
that looked emptiest. So each replica's scraped count (waiting + running) is moved by what
this gateway did there since that scrape: + requests it sent, - its requests that finished.
Counting only what was sent would herd too: replicas are scraped at different moments (the
poller staggers them), so one scraped long ago carries a large count of requests that have
long finished, and every request goes to the one scraped last (in virtual time, mixed lengths
at 70% load, that made TTFT p99 16% worse than round-robin). Ties go to the fewer waiting,
then at random. When any candidate's metrics are stale or missing they are unknown, not idle,
and all candidates are compared by gateway-local in-flight counts instead, so the scores stay
on one scale.
"""

import random
from collections.abc import Sequence

from routers.types import ReplicaView, RouteRequest, StrategyBase


def _score(view: ReplicaView, use_metrics: bool) -> tuple[float, float]:
    metrics = view.metrics
    if use_metrics and metrics is not None:
        moved = view.dispatched_since_scrape - view.finished_since_scrape
        return (metrics.waiting + metrics.running + moved, metrics.waiting)
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
