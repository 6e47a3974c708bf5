"""A KV cache of fixed-size blocks, with prefix caching, static or elastic.

Static mode (stock vLLM): a replica owns `num_blocks` blocks. Elastic mode
(KVCached): replicas that name the same `SharedKVPool` draw physical blocks on
demand from its one budget and give each back as soon as it is freed.

Prefix caching: a full prompt block is identified by a hash chained over its
tokens and all the tokens before it (`block_hashes`). A block keeps its hash
after its request frees it, so a later request with the same prefix reuses it;
such freed cached blocks are evicted least-recently-freed first, and only once
no plain free block is left. In elastic mode a freed block goes back to the
pool at once, so only blocks still held by some request can be shared.
"""

from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal

KVMode = Literal["static", "elastic"]


def block_hashes(token_ids: Sequence[int], block_size: int) -> list[int]:
    """Chained hashes of the full blocks of `token_ids`: each covers its whole prefix.

    Python's hash of a tuple of ints is the same in every process (no hash seed).
    """
    hashes: list[int] = []
    parent = 0
    for start in range(0, len(token_ids) - block_size + 1, block_size):
        parent = hash((parent, tuple(token_ids[start : start + block_size])))
        hashes.append(parent)
    return hashes


class SharedKVPool:
    """One physical KV budget (in blocks) that elastic replicas draw from and return to."""

    def __init__(self, name: str, total_blocks: int) -> None:
        if total_blocks <= 0:
            raise ValueError("a KV pool needs at least one block")
        self.name = name
        self.total_blocks = total_blocks
        self.free_blocks = total_blocks

    def take(self, count: int) -> bool:
        """Reserve `count` blocks if the pool has them."""
        if count > self.free_blocks:
            return False
        self.free_blocks -= count
        return True

    def give_back(self, count: int) -> None:
        self.free_blocks += count


class KVCache:
    """Block bookkeeping for one replica: reference counts, free lists, the prefix map.

    Block ids are local to the replica. `allocate` never evicts a cached block
    while a plain free one is left.
    """

    def __init__(
        self,
        num_blocks: int,
        *,
        prefix_caching: bool = True,
        pool: SharedKVPool | None = None,
    ) -> None:
        if num_blocks <= 0:
            raise ValueError("a KV cache needs at least one block")
        self.num_blocks = num_blocks
        self.prefix_caching = prefix_caching
        self.pool = pool
        self._refs = [0] * num_blocks
        self._hash_of: list[int | None] = [None] * num_blocks
        self._cached: dict[int, int] = {}  # block hash -> block id
        # Free blocks: plain ones (a stack) and cached ones, least recently freed first.
        self._free_plain = list(range(num_blocks - 1, -1, -1))
        self._free_cached: OrderedDict[int, None] = OrderedDict()
        self.used_blocks = 0

    @property
    def elastic(self) -> bool:
        return self.pool is not None

    def num_free(self) -> int:
        """Blocks this replica could allocate right now."""
        local = len(self._free_plain) + len(self._free_cached)
        if self.pool is None:
            return local
        return min(local, self.pool.free_blocks)

    def usage(self) -> float:
        """Share of the GPU's KV memory this replica's requests hold (0..1).

        Static: held / num_blocks, as vLLM's kv_cache_usage_perc (cached free blocks count as
        free). Elastic: held / the pool's blocks, the same denominator (the KV memory of the
        GPU) so that both kinds of fleet report usage on one scale.
        """
        if self.pool is None:
            return self.used_blocks / self.num_blocks
        return self.used_blocks / self.pool.total_blocks

    def allocate(self, count: int, out: list[int]) -> bool:
        """Append `count` fresh blocks to `out`, or change nothing and return False."""
        if count <= 0:
            return True
        if count > len(self._free_plain) + len(self._free_cached):
            return False
        if self.pool is not None and not self.pool.take(count):
            return False
        refs, plain = self._refs, self._free_plain
        fresh = plain[-count:] if count <= len(plain) else plain[:]
        del plain[len(plain) - len(fresh) :]
        for block in fresh:
            refs[block] = 1
        out.extend(fresh)
        if len(fresh) < count:  # evict cached free blocks, least recently freed first
            lru, hash_of, cached = self._free_cached, self._hash_of, self._cached
            for _ in range(count - len(fresh)):
                block, _ = lru.popitem(last=False)
                block_hash = hash_of[block]
                hash_of[block] = None
                if block_hash is not None and cached.get(block_hash) == block:
                    del cached[block_hash]
                refs[block] = 1
                out.append(block)
        self.used_blocks += count
        return True

    def allocate_one(self, out: list[int]) -> bool:
        """`allocate(1, out)`, for the hot path of decoding requests crossing a block."""
        if self.pool is not None:
            return self.allocate(1, out)
        if self._free_plain:
            block = self._free_plain.pop()
        elif self._free_cached:
            block, _ = self._free_cached.popitem(last=False)
            self._evict(block)
        else:
            return False
        self._refs[block] = 1
        out.append(block)
        self.used_blocks += 1
        return True

    def _evict(self, block: int) -> None:
        block_hash = self._hash_of[block]
        if block_hash is not None:
            self._hash_of[block] = None
            if self._cached.get(block_hash) == block:
                del self._cached[block_hash]

    def free(self, blocks: Sequence[int]) -> None:
        """Release a request's blocks; the last block is the first to be evicted."""
        refs = self._refs
        released = 0
        for block in reversed(blocks):
            left = refs[block] - 1
            refs[block] = left
            if left:
                continue
            released += 1
            if self._hash_of[block] is None:
                self._free_plain.append(block)
            elif self.pool is None:
                self._free_cached[block] = None
            else:
                self._evict(block)
                self._free_plain.append(block)
        self.used_blocks -= released
        if self.pool is not None:
            self.pool.give_back(released)

    def match_prefix(self, hashes: Sequence[int], max_blocks: int) -> list[int]:
        """Cached blocks for the leading `hashes` (at most `max_blocks`), not yet taken."""
        if not self.prefix_caching:
            return []
        found: list[int] = []
        cached = self._cached
        for block_hash in hashes[:max_blocks]:
            block = cached.get(block_hash)
            if block is None:
                break
            found.append(block)
        return found

    def extra_for_hits(self, hits: Sequence[int]) -> int:
        """How many of `hits` sit in the free lists (taking them uses free capacity)."""
        refs = self._refs
        return sum(1 for block in hits if refs[block] == 0)

    def take_hits(self, hits: Sequence[int], out: list[int]) -> bool:
        """Share the cached `hits` with a new request; False (no change) if the pool is short."""
        refs = self._refs
        revived = [block for block in hits if refs[block] == 0]
        if revived and self.pool is not None and not self.pool.take(len(revived)):
            return False
        for block in revived:
            del self._free_cached[block]
        for block in hits:
            refs[block] += 1
            out.append(block)
        self.used_blocks += len(revived)
        return True

    def register(self, blocks: Sequence[int], hashes: Sequence[int], start: int, stop: int) -> None:
        """Publish blocks[start:stop], now full of computed prompt tokens, under their hashes.

        A hash already cached keeps its block; the new block stays private.
        """
        if not self.prefix_caching:
            return
        cached, hash_of = self._cached, self._hash_of
        for index in range(start, stop):
            block_hash = hashes[index]
            if block_hash not in cached:
                block = blocks[index]
                if hash_of[block] is None:
                    hash_of[block] = block_hash
                    cached[block_hash] = block

    def cached_blocks(self) -> int:
        """Blocks that carry a prefix hash (held or free)."""
        return len(self._cached)
