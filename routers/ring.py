"""Consistent hashing with bounded loads, over the candidates of one request.

Mirrokni, Thorup and Zadimoghaddam, "Consistent Hashing with Bounded Loads" (SODA 2018,
arXiv 1608.01350), as HAProxy (`hash-balance-factor`, src/lb_chash.c) and Envoy
(`hash_balance_factor`) ship it: a key goes to the first replica clockwise from its point
on the ring whose load is below ceil(balance * (total load + 1) / replicas). No replica
then carries more than `balance` times the average, a key moves only when its replica is
full (to the next one on the ring, the same one every time), and adding or removing a
replica moves only the keys next to its points. Balance 1.25 is Vimeo's choice for
HAProxy and brpc's default (c_murmurhash_bl, load_factor 1.25).

Points are blake2b of "<replica id>#<i>", `vnodes` per replica, so every process (several
gateways, the simulator) builds the same ring; keys are mixed to 64 bits with SplitMix64.
Load is this gateway's in-flight count.
"""

import bisect
import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from operator import attrgetter

from routers.types import ReplicaView

VNODES = 100
BALANCE = 1.25
_MASK = (1 << 64) - 1
_ID = attrgetter("id")
_IN_FLIGHT = attrgetter("in_flight")
# Rings kept for candidate sets that are a small part of the fleet (a model served by few
# replicas of many): walking the whole fleet's ring to find them would be slow.
_SUBSET_RINGS = 16


def mix64(value: int) -> int:
    """SplitMix64's finaliser: spreads any integer (a CRC-32, say) over 64 bits."""
    z = (value + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def text_key(text: str) -> int:
    """A stable 64-bit key for a string (Python's own str hash changes per process)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


class BoundedRing:
    def __init__(self, vnodes: int = VNODES, balance: float = BALANCE) -> None:
        if vnodes < 1:
            raise ValueError("vnodes must be at least 1")
        if balance < 1.0:
            raise ValueError("balance must be at least 1.0")
        self.vnodes = vnodes
        self.balance = balance
        self._points_of: dict[str, list[int]] = {}
        self._ring: tuple[list[int], list[str]] | None = None
        # Candidate ids -> their positions, for the last candidate set seen.
        self._positions: tuple[tuple[str, ...], dict[str, int]] = ((), {})
        self._subsets: OrderedDict[tuple[str, ...], tuple[list[int], list[str]]] = OrderedDict()

    def __contains__(self, replica_id: str) -> bool:
        return replica_id in self._points_of

    def add(self, replica_id: str) -> None:
        if replica_id in self._points_of:
            return
        self._points_of[replica_id] = [text_key(f"{replica_id}#{i}") for i in range(self.vnodes)]
        self._rebuild()

    def remove(self, replica_id: str) -> None:
        if self._points_of.pop(replica_id, None) is not None:
            self._rebuild()

    def _rebuild(self) -> None:
        # Lazily, at the next choice: announcing 500 replicas must not sort 500 times.
        self._ring = None
        self._positions = ((), {})
        self._subsets.clear()

    def choose(self, key: int, candidates: Sequence[ReplicaView]) -> ReplicaView:
        """The first candidate clockwise from `key` with room under the bound."""
        count = len(candidates)
        if count == 1:
            return candidates[0]
        ids = tuple(map(_ID, candidates))
        known, positions = self._positions
        if ids != known:
            for replica_id in ids:
                if replica_id not in self._points_of:  # never announced: join now
                    self.add(replica_id)
            positions = {replica_id: i for i, replica_id in enumerate(ids)}
            self._positions = (ids, positions)
        points, owners = self._ring_for(ids)
        cap = -(-self.balance * (sum(map(_IN_FLIGHT, candidates)) + 1) // count)
        start = bisect.bisect_left(points, mix64(key))
        size = len(points)
        get = positions.get
        for step in range(size):
            at = get(owners[(start + step) % size])
            if at is not None and candidates[at].in_flight < cap:
                return candidates[at]
        # Unreachable: the least loaded candidate is always under the bound.
        return min(candidates, key=_IN_FLIGHT)

    def _ring_for(self, ids: tuple[str, ...]) -> tuple[list[int], list[str]]:
        if len(ids) * 4 >= len(self._points_of):
            if self._ring is None:
                self._ring = _ring_of(self._points_of, self._points_of)
            return self._ring
        ring = self._subsets.get(ids)
        if ring is None:
            ring = self._subsets[ids] = _ring_of(self._points_of, ids)
            if len(self._subsets) > _SUBSET_RINGS:
                self._subsets.popitem(last=False)
        else:
            self._subsets.move_to_end(ids)
        return ring


def _ring_of(
    points_of: dict[str, list[int]], members: Iterable[str]
) -> tuple[list[int], list[str]]:
    pairs = sorted((point, replica_id) for replica_id in members for point in points_of[replica_id])
    return [point for point, _ in pairs], [replica_id for _, replica_id in pairs]
