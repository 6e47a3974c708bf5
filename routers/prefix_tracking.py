"""What the prefix-aware scorers (lmetric, prefix_least_work) keep between requests: where
they sent which prefix, the uncached prompts in flight, and their candidate sampling."""

import random

from routers.pending import PendingPrefill
from routers.prefix_index import PrefixIndex
from routers.signals import Positions
from routers.types import Outcome, ReplicaView, RouteRequest, StrategyBase


class PrefixTracking(StrategyBase):
    """A strategy that remembers what it sent where; subclasses score and choose."""

    def __init__(
        self, block_tokens: int, index_entries: int, sample: int, seed: int | None
    ) -> None:
        self.index = PrefixIndex(block_tokens, index_entries)
        self.pending = PendingPrefill()
        self.sample = sample
        self._positions = Positions()
        self._random = random.Random(seed)

    def _sent(
        self,
        request: RouteRequest,
        choice: ReplicaView,
        hashes: tuple[int, ...],
        tokens: int,
        cached: dict[str, int],
        track_pending: bool,
    ) -> None:
        """Remember that `request` (`tokens` long, `cached` tokens held where) went to `choice`."""
        if hashes:
            self.index.insert(choice.id, hashes, tokens)
        if track_pending:
            uncached = tokens - cached.get(choice.id, 0)
            self.pending.sent(request.request_id, choice.id, uncached, tokens)

    def on_request_finished(self, request: RouteRequest, outcome: Outcome) -> None:
        self.pending.finished(request.request_id)

    def on_replica_removed(self, replica_id: str) -> None:
        self.index.drop(replica_id)
        self.pending.drop(replica_id)
