"""A KV cache of fixed-size blocks, with prefix caching, static or elastic.

Static mode (stock vLLM): a replica owns `num_blocks` blocks. Elastic mode
(KVCached): replicas that name the same `SharedKVPool` draw physical blocks on
demand from its one budget and give each back once it is freed. The pool counts
bytes, so replicas of different models (different KV bytes per token) can share it.

Prefix caching: a full prompt block is identified by a hash chained over its
tokens and all the tokens before it (`block_hashes`). A block keeps its hash
after its request frees it, so a later request with the same prefix reuses it;
such freed cached blocks are evicted least-recently-freed first.

Static mode evicts a freed cached block only once no plain free block is left.
Elastic mode does what KVCached's ElasticBlockPool does (ovg-project/kvcached,
kvcached/integration/vllm/patches.py): a freed cached block stays mapped, so it
keeps its pool memory, up to a bound of `max_cached_blocks` such blocks per
replica (KVCACHED_MAX_CACHED_TOKENS / block size); past the bound, and whenever
the pool is short of memory for a new block, the least recently freed ones go
back to the pool.
"""

from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal

KVMode = Literal["static", "elastic"]

# KVCached's default bound on cached prefix tokens (KVCACHED_MAX_CACHED_TOKENS,
# ovg-project/kvcached examples/09_prefix_caching/README.md).
KVCACHED_MAX_CACHED_TOKENS = 16000


def cached_block_bound(max_cached_tokens: int, block_size: int) -> int | None:
    """KVCached's bound in blocks: None (unbounded) below 0, 0 (evict at once) at 0, else
    tokens // block_size but at least one block (kvcached's `_get_max_cached_blocks`)."""
    if max_cached_tokens < 0:
        return None
    if max_cached_tokens == 0:
        return 0
    return max(1, max_cached_tokens // block_size)


def block_hashes(token_ids: Sequence[int], block_size: int) -> list[int]:
    """Chained hashes of the full blocks of `token_ids`: each covers its whole prefix.

    Python's hash of a tuple of ints is the same in every process (no hash seed).
    """
    hashes: list[int] = []
    parent = 0
    # zip of one iterator `block_size` times: the full blocks as tuples, cut in C (not
    # strict: a partial last block is left out, as the engine caches only full ones).
    for block in zip(*[iter(token_ids)] * block_size, strict=False):
        parent = hash((parent, block))
        hashes.append(parent)
    return hashes


class SharedKVPool:
    """One GPU's (or GPU group's) KV memory, in bytes, that elastic replicas draw from and
    return to; each replica takes whole blocks of its own size (block tokens x its model's
    KV bytes per token)."""

    def __init__(self, name: str, total_bytes: int) -> None:
        if total_bytes <= 0:
            raise ValueError("a KV pool needs some memory")
        self.name = name
        self.total_bytes = total_bytes
        self.free_bytes = total_bytes

    @classmethod
    def of_blocks(cls, name: str, blocks: int, block_bytes: int) -> "SharedKVPool":
        """A pool holding `blocks` blocks of `block_bytes` each."""
        return cls(name, blocks * block_bytes)

    def take(self, nbytes: int) -> bool:
        """Reserve `nbytes` if the pool has them."""
        if nbytes > self.free_bytes:
            return False
        self.free_bytes -= nbytes
        return True

    def give_back(self, nbytes: int) -> None:
        self.free_bytes += nbytes


class KVCache:
    """Block bookkeeping for one replica: reference counts, free lists, the prefix map.

    Block ids are local to the replica. In elastic mode the replica holds
    `held_blocks()` of its pool's memory, `block_bytes` each: blocks its requests use
    plus freed cached blocks kept for reuse (at most `max_cached_blocks`; None: no bound).
    """

    def __init__(
        self,
        num_blocks: int,
        *,
        prefix_caching: bool = True,
        pool: SharedKVPool | None = None,
        max_cached_blocks: int | None = None,
        block_bytes: int = 1,
    ) -> None:
        if num_blocks <= 0 or block_bytes <= 0:
            raise ValueError("a KV cache needs at least one block, of at least one byte")
        if max_cached_blocks is not None and (pool is None or max_cached_blocks < 0):
            raise ValueError("max_cached_blocks bounds an elastic cache, and is 0 or more")
        self.num_blocks = num_blocks
        self.prefix_caching = prefix_caching
        self.pool = pool
        self.max_cached_blocks = max_cached_blocks
        self.block_bytes = block_bytes
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
        plain = len(self._free_plain)
        if self.pool is not None:
            plain = min(plain, self.pool.free_bytes // self.block_bytes)
        return plain + len(self._free_cached)

    def held_blocks(self) -> int:
        """Blocks whose memory this replica holds: used ones and freed cached ones."""
        return self.used_blocks + len(self._free_cached)

    def kept_blocks(self) -> int:
        """Freed cached blocks kept for reuse (no request holds them)."""
        return len(self._free_cached)

    def usage(self) -> float:
        """Share of the GPU's KV memory this replica's requests hold (0..1).

        Freed cached blocks count as free, as in vLLM's kv_cache_usage_perc (and
        KVCached's ElasticBlockPool.get_usage). Static: held / num_blocks. Elastic: bytes held /
        the pool's bytes, the same denominator (the KV memory of the GPU), so that both kinds
        of fleet report usage on one scale.
        """
        if self.pool is None:
            return self.used_blocks / self.num_blocks
        return self.used_blocks * self.block_bytes / self.pool.total_bytes

    def allocate(self, count: int, out: list[int]) -> bool:
        """Append `count` fresh blocks to `out`, or change nothing and return False.

        A cached free block is evicted (least recently freed first) only when no
        plain one can be had: static, none is left; elastic, also when the pool
        is short, since a kept block already holds its memory (KVCached's
        get_new_blocks evicts just the shortfall).
        """
        if count <= 0:
            return True
        plain, lru = self._free_plain, self._free_cached
        fresh_count = min(count, len(plain))
        if self.pool is not None:
            fresh_count = min(fresh_count, self.pool.free_bytes // self.block_bytes)
        evicted = count - fresh_count
        if evicted > len(lru):
            return False
        if self.pool is not None:
            self.pool.take(fresh_count * self.block_bytes)
        refs = self._refs
        fresh = plain[len(plain) - fresh_count :]
        del plain[len(plain) - fresh_count :]
        for block in fresh:
            refs[block] = 1
        out.extend(fresh)
        for _ in range(evicted):
            block, _ = lru.popitem(last=False)
            self._evict(block)
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
        """Release a request's blocks; the last block is the first to be evicted.

        Elastic: plain blocks go back to the pool at once, cached ones once more
        than `max_cached_blocks` are kept (the least recently freed first).
        """
        refs, hash_of = self._refs, self._hash_of
        plain, lru = self._free_plain, self._free_cached
        released = returned = 0
        for block in reversed(blocks):
            left = refs[block] - 1
            refs[block] = left
            if left:
                continue
            released += 1
            if hash_of[block] is None:
                plain.append(block)
                returned += 1
            else:
                lru[block] = None
        self.used_blocks -= released
        if self.pool is None:
            return
        bound = self.max_cached_blocks
        if bound is not None:
            for _ in range(len(lru) - bound):
                block, _ = lru.popitem(last=False)
                self._evict(block)
                plain.append(block)
                returned += 1
        self.pool.give_back(returned * self.block_bytes)

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

    def take_hits(self, hits: Sequence[int], out: list[int]) -> None:
        """Share the cached `hits` with a new request (a freed one keeps its memory)."""
        refs, lru = self._refs, self._free_cached
        revived = 0
        for block in hits:
            if refs[block] == 0:
                del lru[block]
                revived += 1
            refs[block] += 1
            out.append(block)
        self.used_blocks += revived

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
