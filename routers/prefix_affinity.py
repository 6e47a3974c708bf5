"""Prefix affinity: consistent hashing on the prompt's leading blocks, with bounded load.

Requests whose prompts begin alike (a shared system prompt, tool definitions, a document)
go to the same replica, where that prefix is already in the KV cache, so its prefill is
skipped; a replica holding a popular prefix takes no more than `balance` (1.25) times the
average load, and the overflow goes to the next replica on the ring, always the same one,
so a hot prefix warms a second replica instead of spreading over all (`routers.ring`).

The key is the chained hash of the first `key_blocks` blocks of the prompt (64 bytes or 16
tokens each, `routers.prompt`), or of all its blocks when it has fewer: long enough to tell
system prompts apart, short enough that the user's own message is not in it. A prompt
shorter than one block has no key and goes to the replica with the fewest requests in
flight. Replicas join and leave the ring through the strategy hooks (and on first sight).

Unlike `prefix_least_work` it never weighs queues: with prompts of very uneven cost, a
replica can be under the request bound and still be the slow one.
"""

import random
from collections.abc import Sequence

from routers.ring import BALANCE, VNODES, BoundedRing, mix64
from routers.signals import lowest
from routers.types import ReplicaView, RouteRequest, StrategyBase

KEY_BLOCKS = 4


class PrefixAffinity(StrategyBase):
    name = "prefix_affinity"

    def __init__(
        self,
        key_blocks: int = KEY_BLOCKS,
        balance: float = BALANCE,
        vnodes: int = VNODES,
        seed: int | None = None,
    ) -> None:
        if key_blocks < 1:
            raise ValueError("key_blocks must be at least 1")
        self.key_blocks = key_blocks
        self.ring = BoundedRing(vnodes, balance)
        self._random = random.Random(seed)

    def choose(
        self, request: RouteRequest, candidates: Sequence[ReplicaView]
    ) -> ReplicaView | None:
        if not candidates:
            return None
        key = prefix_key(request, self.key_blocks)
        if key is None:
            return lowest([float(v.in_flight) for v in candidates], candidates, self._random)
        return self.ring.choose(key, candidates)

    def on_replica_added(self, replica_id: str) -> None:
        self.ring.add(replica_id)

    def on_replica_removed(self, replica_id: str) -> None:
        self.ring.remove(replica_id)


def prefix_key(request: RouteRequest, key_blocks: int) -> int | None:
    """The ring key of a request's leading blocks, or None when it has no full block."""
    hashes = request.prefix_hashes
    if not hashes:
        return None
    return mix64(hashes[min(key_blocks, len(hashes)) - 1])
