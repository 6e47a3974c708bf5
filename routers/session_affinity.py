"""Session affinity: a conversation stays on one replica while it has room.

A conversation's next turn repeats all of the last one, so on the replica that served it
the whole history is a prefix-cache hit. The session key is the request's `user` field or
its `x-session-id` header (`RouteRequest.session`); a session is hashed onto a ring with
bounded load (`routers.ring`): it stays on its replica while that replica is healthy (it is
a candidate) and carries less than `balance` (1.25) times the average load, and otherwise
moves to the next replica on the ring, the same one every time, until its own has room.
Unlike vLLM production-stack's session router (uhashring, no bound) a popular session
cannot overload a replica.

Requests without a session are keyed by their leading prompt blocks, as in
`prefix_affinity` (a conversation's first messages do not change from turn to turn); with
neither they go to the replica with the fewest requests in flight.
"""

import random
from collections import OrderedDict
from collections.abc import Sequence

from routers.prefix_affinity import KEY_BLOCKS, prefix_key
from routers.ring import BALANCE, VNODES, BoundedRing, text_key
from routers.signals import lowest
from routers.types import ReplicaView, RouteRequest, StrategyBase

# Session keys remembered (hashing one costs about a microsecond).
_KEYS_KEPT = 4096


class SessionAffinity(StrategyBase):
    name = "session_affinity"
    reads_prefix_hashes = False

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
        self._keys: OrderedDict[str, int] = OrderedDict()
        self._random = random.Random(seed)

    def choose(
        self, request: RouteRequest, candidates: Sequence[ReplicaView]
    ) -> ReplicaView | None:
        if not candidates:
            return None
        session = request.session
        key = self._session_key(session) if session else prefix_key(request, self.key_blocks)
        if key is None:
            return lowest([float(v.in_flight) for v in candidates], candidates, self._random)
        return self.ring.choose(key, candidates)

    def _session_key(self, session: str) -> int:
        key = self._keys.get(session)
        if key is None:
            key = self._keys[session] = text_key(session)
            if len(self._keys) > _KEYS_KEPT:
                self._keys.popitem(last=False)
        return key

    def on_replica_added(self, replica_id: str) -> None:
        self.ring.add(replica_id)

    def on_replica_removed(self, replica_id: str) -> None:
        self.ring.remove(replica_id)
