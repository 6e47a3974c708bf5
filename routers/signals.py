"""Load signals, sampling and tie-breaking shared by the strategies, written for speed.

A choice must cost at most 5 µs among 6 candidates and 50 µs among 500. Python spends
about 100 ns a candidate reading a view's figures and doing the arithmetic of a score, so
strategies that score every candidate do so only up to `SAMPLE` x 2 of them; beyond, they
score `SAMPLE` drawn at random (`subset`: a random offset and a fixed stride, one draw),
plus any they must see (the replicas holding the prompt's prefix). Picking the best of d
random replicas is within a whisker of the best of all once d is in the tens
(Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing", IEEE TPDS 2001).
Scores are built in one list comprehension each; the arg-min is left to C (`min`,
`list.index`).
"""

import random
from collections.abc import Callable, Sequence
from operator import attrgetter

from routers.types import ReplicaView

# Candidates scored when there are more than twice as many.
SAMPLE = 32

_ID = attrgetter("id")
_STALE = attrgetter("metrics_stale")


def batch_sizes(candidates: Sequence[ReplicaView]) -> list[float]:
    """Each replica's batch (running + waiting) as this gateway best knows it.

    Its own requests there it counts exactly (`in_flight`); other senders' (other gateways,
    direct clients) only the last scrape shows: its running + waiting minus what this
    gateway had in flight when it was taken. So: in_flight + max(0, scraped - in flight at
    the scrape) (`others_at_scrape`, which the pool works out once a scrape), when every
    candidate's scrape is fresh; otherwise in_flight alone for all of them, one scale for
    all (an unknown load is not an idle one).

    Crediting the scrape with what was sent since (`dispatched_since_scrape`) instead is
    right only until requests finish: a replica scraped 0.9 s ago is charged with every
    request that finished there since, one scraped 0.1 s ago with few, so with staggered
    scrapes traffic drifts to whichever was scraped last (in virtual time on the Qwen pair,
    chat traffic at 0.85 of saturation: lmetric's TTFT p99 1.56x round_robin's credited,
    0.86x this way; see docs/routing.md).
    """
    if not scraped(candidates):
        return [float(v.in_flight) for v in candidates]
    return [v.in_flight + v.others_at_scrape for v in candidates]


def scraped(candidates: Sequence[ReplicaView]) -> bool:
    """True when every candidate's scrape is fresh (one scale: see `batch_sizes`)."""
    return True not in map(_STALE, candidates)


def subset(
    candidates: Sequence[ReplicaView], rng: random.Random, size: int = SAMPLE
) -> Sequence[ReplicaView]:
    """All candidates, or about `size` of them at random when there are over twice as many."""
    count = len(candidates)
    if size <= 0 or count <= 2 * size:
        return candidates
    step = count // size
    return candidates[int(rng.random() * step) :: step]


class Positions:
    """Where each replica id sits in the candidate list, remembered for the last list seen
    (the pool lists the same candidates in the same order request after request)."""

    def __init__(self) -> None:
        self._ids: tuple[str, ...] = ()
        self._at: dict[str, int] = {}

    def of(self, candidates: Sequence[ReplicaView]) -> dict[str, int]:
        ids = tuple(map(_ID, candidates))
        if ids != self._ids:
            self._ids = ids
            self._at = {replica_id: i for i, replica_id in enumerate(ids)}
        return self._at


def with_holders(
    candidates: Sequence[ReplicaView],
    sampled: Sequence[ReplicaView],
    holders: dict[str, int],
    positions: Positions,
) -> Sequence[ReplicaView]:
    """`sampled` plus the candidates among `holders` (replica ids) it left out. A prefix
    held by more replicas than were sampled is well represented in the sample already."""
    if sampled is candidates or not holders or len(holders) > len(sampled):
        return sampled
    at = positions.of(candidates)
    chosen = {view.id for view in sampled}
    extra = [
        candidates[i] for rid in holders if rid not in chosen and (i := at.get(rid)) is not None
    ]
    return [*sampled, *extra] if extra else sampled


def lowest(
    scores: Sequence[float], candidates: Sequence[ReplicaView], rng: random.Random
) -> ReplicaView:
    """The candidate with the lowest score; equal lowest scores are drawn at random."""
    best = min(scores)
    if scores.count(best) == 1:
        return candidates[scores.index(best)]
    tied = [view for view, score in zip(candidates, scores, strict=True) if score == best]
    return tied[int(rng.random() * len(tied))]


def lowest_then(
    scores: Sequence[float],
    then: Callable[[int], float],
    candidates: Sequence[ReplicaView],
    rng: random.Random,
) -> ReplicaView:
    """The lowest score; among equal ones the lowest `then(position)`; the rest at random."""
    best = min(scores)
    if scores.count(best) == 1:
        return candidates[scores.index(best)]
    tied = [i for i, score in enumerate(scores) if score == best]
    seconds = [then(i) for i in tied]
    least = min(seconds)
    tied = [i for i, second in zip(tied, seconds, strict=True) if second == least]
    return candidates[tied[int(rng.random() * len(tied))]]
