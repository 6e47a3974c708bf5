"""Which replica probably holds which prompt prefix in its KV cache: an approximate index.

The gateway cannot see the engines' caches, so a strategy remembers what it sent where, as
the approximate prefix scorer of the Gateway API Inference Extension does
(kubernetes-sigs/gateway-api-inference-extension, pkg/epp/scheduling/framework/plugins/
multi/prefix/plugin.go): once a request is routed to a replica its prompt's blocks are
assumed cached there. The index forgets least recently used prefixes first, beyond
`max_entries` over the whole fleet; it does not model each replica's own evictions:
believing a replica still holds a prefix it evicted costs little (the prefix is then cold
everywhere, and sending it there warms it again), while forgetting one a replica holds
splits it over replicas (on the shared-prefix evidence in docs/routing.md, a per-replica
budget of 500 K tokens, GIE's default, left lmetric at 0.45 of round_robin's TTFT p99 where
a budget at least the engine's cache gave 0.04).

Five economies keep a request's cost to about ten dictionary operations:
- Only checkpoint blocks are indexed: blocks 4, 8, 16, 32, ... and the prompt's last
  hashed block. A match is known to within half its length (rounded down), exactly when it
  is a whole earlier prompt or a power of two; a prefix shorter than 4 blocks (64 tokens)
  is not worth routing for.
- The hashes are chained (`routers.prompt`), so holding block i means holding every block
  before it. A request's checkpoints are refreshed deepest first, so shallow ones are
  always at least as recent as deep ones and outlive them (as in vLLM, which evicts a freed
  prompt's tail first). The replicas holding checkpoint i then include those holding
  checkpoint i + 1, and a match walks checkpoints until none holds one, noting only where
  the number of holders drops.
- A prompt that shares not even its first checkpoint with an earlier one (most prompts:
  each user's own text) is set aside whole, in a plain dictionary by its first checkpoint,
  and its checkpoints are indexed when a later prompt shares the first (with the same
  result as indexing them at once, since no lookup could have reached them before). Such
  lone prompts are forgotten oldest first, beyond `max_entries` // 2 of them, a slice
  at a time; the ordered index of the rest writes each entry twice as slowly.
- One least-recently-used order for the whole fleet, so nothing is evicted per replica.
- A checkpoint sent to one replica only (most of them) is held as that replica's id, not
  as a collection: allocating those was 40% of inserting a lone prompt. A second replica
  makes it a dict of replica ids, in the order they were first sent the prefix (a set of
  strings would iterate in an order that changes from one process to the next with
  Python's string hashing, and strategies that sample candidates take the holders in
  that order: the same study gave two answers).

Prompts longer than the hashed window (`routers.prompt.MAX_BLOCKS`) cannot be matched past
it. When a request matches a replica over its whole window, the index assumes the cached
part extends as far as the shortest prompt sent with that window (a shared document
followed by different questions: the document; a conversation's next turn: the last turn).
"""

from collections import OrderedDict
from collections.abc import Callable, Sequence
from itertools import islice
from operator import itemgetter

# vLLM's default KV block: the simulator hashes 16-token blocks, the gateway 64-byte ones.
BLOCK_TOKENS = 16
# The shallowest checkpoint: 4 blocks (64 tokens); shorter shared prefixes (a chat
# template's first words, common to every prompt) save too little prefill to route by.
FIRST_CHECKPOINT = 4
# Entries (checkpoint hashes) kept over the whole fleet, each with the replicas sent
# it: about 300 bytes each, so about 80 MB at most. A request of 1,000 tokens or more that
# shares a prefix adds five, so the index spans the last 50,000 or so such prompts; lone
# prompts, up to half as many, are kept apart at about 370 bytes each (48 MB at most).
MAX_ENTRIES = 1 << 18


def checkpoints(count: int) -> tuple[int, ...]:
    """Block counts (1-based) indexed for a prompt of `count` hashed blocks."""
    if count <= 0:
        return ()
    points = []
    size = FIRST_CHECKPOINT
    while size < count:
        points.append(size)
        size *= 2
    points.append(count)
    return tuple(points)


# Checkpoint lists by hashed length, computed once: most prompts hit the window limit.
_BY_COUNT = tuple(checkpoints(n) for n in range(129))
_TABLED = len(_BY_COUNT)
_REVERSED = tuple(tuple(reversed(points)) for points in _BY_COUNT)


def _rest_getter(count: int) -> Callable[[Sequence[int]], tuple[int, ...]]:
    """Picks the hashes of every checkpoint but the first, deepest first."""
    indices = [point - 1 for point in checkpoints(count)[::-1][:-1]]
    if len(indices) == 1:
        only = indices[0]
        return lambda hashes: (hashes[only],)
    if not indices:
        return lambda hashes: ()
    getter: Callable[[Sequence[int]], tuple[int, ...]] = itemgetter(*indices)
    return getter


_RESTS = tuple(_rest_getter(n) for n in range(129))
# Lone prompts forgotten at once when there are too many (a slice of them: the dictionary
# is scanned from its start, past the holes its deletions left, once a slice).
_LONE_SLICE = 64


# Who holds a checkpoint: one replica's id, or theirs (keys, first sent first; values None).
Holders = str | dict[str, None]


class PrefixIndex:
    """The prefixes assumed cached on each replica; `cached` answers for all at once."""

    def __init__(self, block_tokens: int = BLOCK_TOKENS, max_entries: int = MAX_ENTRIES) -> None:
        if block_tokens < 1 or max_entries < 1:
            raise ValueError("block_tokens and max_entries must be positive")
        self.block_tokens = block_tokens
        self.max_entries = max_entries
        # checkpoint hash -> the replica sent it, or the replicas (least recently used first)
        self._where: OrderedDict[int, Holders] = OrderedDict()
        # window-end hash -> shortest prompt (tokens) sent with that whole window
        self._extent: dict[int, int] = {}
        # first-checkpoint hash -> (replica, the prompt's other checkpoints deep first, its
        # tokens if beyond the window or 0), for lone prompts (see `insert`), oldest first
        self._lone: dict[int, tuple[str, tuple[int, ...], int]] = {}
        self.max_lone = max(max_entries // 2, 1)
        self.defer = True

    def __len__(self) -> int:
        """Checkpoints indexed, counting a lone prompt's two ends (its first and last)."""
        return len(self._where) + 2 * len(self._lone)

    def match(self, hashes: Sequence[int]) -> dict[str, int]:
        """Replica -> how many leading blocks of `hashes` it probably holds (absent: none)."""
        return _by_replica(self._levels(hashes), int)

    def cached(self, hashes: Sequence[int], prompt_tokens: int) -> dict[str, int]:
        """Replica -> tokens of this prompt it probably has cached (absent: none)."""
        count = len(hashes)
        points = _BY_COUNT[count] if count < _TABLED else checkpoints(count)
        if not points:
            return {}
        first = hashes[points[0] - 1]
        if first not in self._where and first not in self._lone:
            return {}  # most prompts: not even the first checkpoint was sent before
        levels = self._levels(hashes)
        block = self.block_tokens
        if len(levels) == 1:
            blocks, holders = levels[0]
            cached = blocks * block
            if blocks == count and prompt_tokens > cached + block:
                cached = max(cached, self._extent.get(hashes[-1], 0))
            cached = min(cached, prompt_tokens)
            return {holders: cached} if holders.__class__ is str else dict.fromkeys(holders, cached)
        extent = self._extent.get(hashes[-1], 0)

        def tokens(blocks: int) -> int:
            cached = blocks * block
            if blocks == count and prompt_tokens > cached + block:
                # The whole hashed window matched: the prompt may be cached beyond it.
                cached = max(cached, extent)
            return min(cached, prompt_tokens)

        return _by_replica(levels, tokens)

    def _levels(self, hashes: Sequence[int]) -> list[tuple[int, Holders]]:
        """(blocks, replicas holding that many or more): the checkpoints after which the
        number of holders drops, shallow to deep."""
        get = self._where.get
        count = len(hashes)
        points = _BY_COUNT[count] if count < _TABLED else checkpoints(count)
        if not points:
            return []
        if self._lone and hashes[points[0] - 1] in self._lone:
            self._complete(hashes[points[0] - 1])
        levels: list[tuple[int, Holders]] = []
        prev: Holders | None = None
        prev_size = prev_point = 0
        for point in points:
            holders = get(hashes[point - 1])
            if holders is None:
                break
            size = 1 if holders.__class__ is str else len(holders)
            if prev is not None and size != prev_size:
                levels.append((prev_point, prev))
            prev, prev_size, prev_point = holders, size, point
        if prev is not None:
            levels.append((prev_point, prev))
        return levels

    def _complete(self, first: int) -> None:
        """Index the checkpoints of the lone prompt that came with checkpoint `first`, now
        that another prompt shares it."""
        replica, rest, tokens = self._lone.pop(first)
        where = self._where
        for key in rest:
            holders = where.get(key)
            if holders is None:
                where[key] = replica
            else:
                _add(where, key, holders, replica)
                where.move_to_end(key)
        holders = where.get(first)
        if holders is None:
            where[first] = replica
        else:
            _add(where, first, holders, replica)
            where.move_to_end(first)  # the shallow ones stay the most recent
        if tokens:
            extent = self._extent.get(rest[0])
            if extent is None or tokens < extent:
                self._extent[rest[0]] = tokens
        self._evict()

    def insert(self, replica: str, hashes: Sequence[int], prompt_tokens: int) -> None:
        """`replica` was sent this prompt: assume it caches the prompt's blocks."""
        count = len(hashes)
        if not count:
            return
        where = self._where
        points = _REVERSED[count] if count < _TABLED else checkpoints(count)[::-1]
        first = hashes[points[-1] - 1]
        if first not in where:
            lone = self._lone
            if first in lone:
                self._complete(first)
            elif len(points) > 2 and self.defer:
                # No earlier prompt shares even the first checkpoint: most such prompts
                # stay the only ones, so set the prompt aside until one shares it. Nothing
                # deeper is indexed either (deeper checkpoints are evicted first, and their
                # holders are among the first's), so no lookups: each one is a likely
                # cache miss in an index this size, and they were most of a choice's cost.
                rest = _RESTS[count] if count < _TABLED else _rest_getter(count)
                beyond = prompt_tokens if prompt_tokens > count * self.block_tokens else 0
                lone[first] = (replica, rest(hashes), beyond)
                if len(lone) > self.max_lone:
                    self._forget_lone()
                return
        if prompt_tokens > count * self.block_tokens:
            last = hashes[-1]
            extent = self._extent.get(last)
            if extent is None or prompt_tokens < extent:
                self._extent[last] = prompt_tokens
        get = where.get
        touch = where.move_to_end
        # Deepest first, so that the shallow blocks end up the most recently used.
        for point in points:
            key = hashes[point - 1]
            holders = get(key)
            if holders is None:
                where[key] = replica
            else:
                if holders.__class__ is not str:
                    holders[replica] = None  # type: ignore[index]
                elif holders != replica:
                    where[key] = {holders: None, replica: None}
                touch(key)
        if len(where) > self.max_entries:
            self._evict()

    def _forget_lone(self) -> None:
        lone = self._lone
        excess = len(lone) - self.max_lone
        for key in list(islice(lone, max(excess, self.max_lone // _LONE_SLICE))):
            del lone[key]

    def _evict(self) -> None:
        where = self._where
        evict = where.popitem
        extents = self._extent
        for _ in range(len(where) - self.max_entries):
            key, _holders = evict(last=False)
            if extents:
                extents.pop(key, None)

    def drop(self, replica: str) -> None:
        """Forget everything sent to `replica` (it left, or may come back with an empty
        cache). Walks the whole index: for ejections, not for every request."""
        where = self._where
        emptied = []
        for key, holders in where.items():
            if holders.__class__ is str:
                if holders == replica:
                    emptied.append(key)
                continue
            holders.pop(replica, None)  # type: ignore[union-attr]
            if not holders:
                emptied.append(key)
        for key in emptied:
            del where[key]
            self._extent.pop(key, None)
        for key in [k for k, (holder, _, _) in self._lone.items() if holder == replica]:
            del self._lone[key]


def _add(where: "OrderedDict[int, Holders]", key: int, holders: Holders, replica: str) -> None:
    """Add `replica` to the holders of `key` (a dict from the second one on)."""
    if holders.__class__ is not str:
        holders[replica] = None  # type: ignore[index]
    elif holders != replica:
        where[key] = {holders: None, replica: None}


def _by_replica(levels: list[tuple[int, Holders]], value: Callable[[int], int]) -> dict[str, int]:
    found: dict[str, int] = {}
    for blocks, holders in levels:  # shallow to deep: a replica's deepest level wins
        if holders.__class__ is str:
            found[holders] = value(blocks)
        else:
            found.update(dict.fromkeys(holders, value(blocks)))
    return found
