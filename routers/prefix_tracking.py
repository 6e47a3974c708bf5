"""What the prefix-aware scorers (lmetric, prefix_least_work) keep between requests: where
they sent which prefix, and their candidate sampling."""

import random

from routers.prefix_index import PrefixIndex
from routers.signals import Positions
from routers.types import StrategyBase


class PrefixTracking(StrategyBase):
    """A strategy that remembers what it sent where; subclasses score and choose."""

    def __init__(
        self, block_tokens: int, index_entries: int, sample: int, seed: int | None
    ) -> None:
        self.index = PrefixIndex(block_tokens, index_entries)
        self.sample = sample
        self._positions = Positions()
        self._random = random.Random(seed)

    def on_replica_removed(self, replica_id: str) -> None:
        self.index.drop(replica_id)
