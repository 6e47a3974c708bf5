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
on one scale. Among more than 2 x `sample` candidates, `sample` drawn at random are
scored (`routers.signals`: the best of a few tens is within a whisker of the best of all, and
a choice among 500 then costs what one among 64 does).
"""

import random
from collections.abc import Sequence

from routers.signals import SAMPLE, lowest, subset
from routers.types import ReplicaView, RouteRequest, StrategyBase

# The score is one float: the count, then the waiting (below 2**20) as the tie-break.
_TIE = float(1 << 20)


class _Stale(Exception):
    pass


def _stale() -> float:
    raise _Stale


def _scores(candidates: Sequence[ReplicaView]) -> list[float]:
    """(waiting + running + sent - finished since the scrape) x 2**20 + waiting, for all;
    or the in-flight counts of all when any scrape is stale or missing (one scale)."""
    try:
        return [
            _stale()
            if v.metrics_stale
            else (
                v.metrics.waiting  # type: ignore[union-attr]
                + v.metrics.running  # type: ignore[union-attr]
                + v.dispatched_since_scrape
                - v.finished_since_scrape
            )
            * _TIE
            + min(v.metrics.waiting, _TIE - 1.0)  # type: ignore[union-attr]
            for v in candidates
        ]
    except (_Stale, AttributeError):  # stale, or no metrics though not marked stale
        return [float(v.in_flight) for v in candidates]


class QueueDepth(StrategyBase):
    name = "queue_depth"
    reads_prefix_hashes = False

    def __init__(self, seed: int | None = None, sample: int = SAMPLE) -> None:
        self._random = random.Random(seed)
        self.sample = sample

    def choose(
        self, request: RouteRequest, candidates: Sequence[ReplicaView]
    ) -> ReplicaView | None:
        if not candidates:
            return None
        if len(candidates) > 2 * self.sample > 0:
            candidates = subset(candidates, self._random, self.sample)
        return lowest(_scores(candidates), candidates, self._random)
