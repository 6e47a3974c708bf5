"""KV blocks: prefix caching with chained hashes, LRU eviction, the elastic shared pool."""

import pytest

from loadtest.sim.engine import EngineConfig, EngineModel
from loadtest.sim.gpus import block_bytes
from loadtest.sim.kvcache import KVCache, SharedKVPool, block_hashes, cached_block_bound
from loadtest.sim.profiles import load_profile
from tests.loadtest.sim.helpers import (
    Clock,
    engine,
    free_blocks,
    request,
    tiny_pool,
    tokens,
)


def test_block_hashes_chain_over_the_whole_prefix() -> None:
    a = block_hashes(tokens(40), 16)
    assert len(a) == 2  # only full blocks
    assert block_hashes(tokens(40), 16) == a
    b = block_hashes([999, *tokens(39, 1)], 16)
    assert b[0] != a[0] and b[1] != a[1]  # same second block, different prefix
    assert block_hashes(tokens(32), 16) == a


def test_a_second_request_with_the_same_prefix_hits_its_blocks() -> None:
    model = engine(max_num_batched_tokens=256)
    shared = tokens(64, 5000)
    model.add(request("first", [*shared, *tokens(16, 1)], max_tokens=2), 0.0)
    clock = Clock(model)
    clock.run()
    assert (model.stats().prefix_queries, model.stats().prefix_hits) == (80, 0)

    model.add(request("second", [*shared, *tokens(16, 2)], max_tokens=2), clock.now)
    prefill = clock.step()
    assert prefill.num_tokens == 16  # 4 of 5 blocks came from the cache
    stats = model.stats()
    assert (stats.prefix_queries, stats.prefix_hits) == (160, 64)


def test_an_identical_prompt_still_computes_its_last_block() -> None:
    model = engine(max_num_batched_tokens=256)
    model.add(request("one", tokens(48), max_tokens=1), 0.0)
    clock = Clock(model)
    clock.run()
    model.add(request("two", tokens(48), max_tokens=1), clock.now)
    assert clock.step().num_tokens == 16  # (48 - 1) // 16 = 2 blocks hit
    assert model.stats().prefix_hits == 32


def test_running_requests_share_cached_blocks() -> None:
    model = engine(max_num_batched_tokens=256)
    model.add(request("a", tokens(64), max_tokens=30), 0.0)
    clock = Clock(model)
    clock.step()
    assert model.stats().used_blocks == 4
    model.add(request("b", [*tokens(48), 7, 7, 7, 7], max_tokens=30), clock.now)
    clock.step()
    # a holds 4 blocks plus one for its first decode; b shares 3 and adds 1.
    assert model.stats().used_blocks == 4 + 1 + 1


def test_prefix_caching_can_be_turned_off() -> None:
    model = engine(max_num_batched_tokens=256, prefix_caching=False)
    model.add(request("one", tokens(48), max_tokens=1), 0.0)
    clock = Clock(model)
    clock.run()
    model.add(request("two", tokens(48), max_tokens=1), clock.now)
    assert clock.step().num_tokens == 48
    assert (model.stats().prefix_queries, model.stats().prefix_hits) == (0, 0)


def test_freed_cached_blocks_are_evicted_least_recently_freed_first() -> None:
    model = engine(max_num_batched_tokens=256, num_blocks=6)
    clock = Clock(model)
    for name, start in (("old", 100), ("new", 200)):
        model.add(request(name, tokens(32, start), max_tokens=1), clock.now)
        clock.run()
    assert model.kv.cached_blocks() == 4  # both prompts cached, 2 plain blocks free

    # 4 fresh blocks: the 2 plain ones first, then the 2 least recently freed ("old").
    model.add(request("filler", tokens(64, 300), max_tokens=1), clock.now)
    clock.run()
    model.add(request("new-again", tokens(32, 200), max_tokens=1), clock.now)
    clock.run()
    assert model.stats().prefix_hits == 16  # "new" was kept (at most 1 of 2 blocks can hit)
    model.add(request("old-again", tokens(32, 100), max_tokens=1), clock.now)
    clock.run()
    assert model.stats().prefix_hits == 16  # "old" was evicted


def test_the_last_block_of_a_freed_request_is_evicted_before_its_first() -> None:
    cache = KVCache(3)
    held: list[int] = []
    assert cache.allocate(2, held)
    hashes = block_hashes(tokens(32), 16)
    cache.register(held, hashes, 0, 2)
    cache.free(held)
    taken: list[int] = []
    assert cache.allocate(2, taken)  # the plain block, then one eviction
    assert cache.match_prefix(hashes, 2) == [held[0]]


def test_replicas_on_one_elastic_pool_draw_from_one_budget() -> None:
    pool = tiny_pool(8)
    left, right = (engine(pool, max_num_batched_tokens=256, prefix_caching=False) for _ in "lr")
    left.add(request("big", 96, max_tokens=1), 0.0)
    Clock(left).step()  # finishes at once: blocks come back
    assert free_blocks(pool) == 8

    left.add(request("holder", 96, max_tokens=20), 0.0)
    left_clock = Clock(left)
    left_clock.step()
    assert free_blocks(pool) == 2
    assert left.stats().kv_usage == 6 / 8

    right.add(request("starved", 64, max_tokens=5), 0.0)
    right_clock = Clock(right)
    idle = right_clock.step()
    assert (idle.num_tokens, right.stats().waiting, right.stats().kv_usage) == (0, 1, 0.0)

    left.abort("holder")  # left frees: right grows into what it gave back
    assert free_blocks(pool) == 8
    assert right_clock.step().first_token == ("starved",)
    assert right.stats().used_blocks == 4 and free_blocks(pool) == 4
    right_clock.run()
    assert free_blocks(pool) == 8


def test_one_elastic_replica_can_grow_to_the_whole_pool() -> None:
    pool = tiny_pool(8)
    alone = engine(pool, max_num_batched_tokens=256, prefix_caching=False)
    engine(pool)  # a neighbour that holds nothing
    alone.add(request("all", 120, max_tokens=8), 0.0)
    clock = Clock(alone)
    clock.step()
    assert free_blocks(pool) == 0 and alone.stats().kv_usage == 1.0
    clock.run()
    assert free_blocks(pool) == 8


def test_an_elastic_step_is_slower_by_kvcacheds_overhead_growing_with_the_batch() -> None:
    llama = load_profile("llama-3.1-8b-h100")

    def first_step(kv_mode: str, requests: int) -> float:
        config = EngineConfig(kv_mode=kv_mode, max_num_seqs=64)  # type: ignore[arg-type]
        pool = None
        if kv_mode == "elastic":
            pool = SharedKVPool.of_blocks("gpu0", llama.kv_blocks(16), block_bytes(llama, 16))
        model = EngineModel(llama, config, pool)
        for i in range(requests):
            model.add(request(f"r{i}", 32, max_tokens=4), 0.0)
        return model.step(0.0).duration

    # KVCached's own H100 figures: +18% time per token with full batches, ~0 when light.
    assert first_step("elastic", 64) == pytest.approx(first_step("static", 64) * 1.18)
    assert first_step("elastic", 8) == pytest.approx(first_step("static", 8) * (1 + 0.18 / 8))


def test_elastic_usage_is_a_share_of_the_gpus_kv_memory() -> None:
    pool = tiny_pool(10)
    one, two = engine(pool, max_num_batched_tokens=256), engine(pool, max_num_batched_tokens=256)
    one.add(request("a", 64, max_tokens=20), 0.0)
    two.add(request("b", 32, max_tokens=20), 0.0)
    Clock(one).step()
    Clock(two).step()
    # Both on the pool's ten blocks, as a static cache reports on its own blocks.
    assert (one.stats().kv_usage, two.stats().kv_usage) == (0.4, 0.2)  # 4 and 2 blocks


# -- elastic prefix caching: KVCached keeps freed cached blocks mapped, up to a bound ----


def held(pool: SharedKVPool, *models: object) -> int:
    """Pool blocks accounted for: free in the pool plus what each replica holds."""
    return free_blocks(pool) + sum(model.kv.held_blocks() for model in models)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("tokens_bound", "blocks"), [(-1, None), (0, 0), (8, 1), (16, 1), (40, 2), (16000, 1000)]
)
def test_cached_block_bound_follows_kvcached(tokens_bound: int, blocks: int | None) -> None:
    assert cached_block_bound(tokens_bound, 16) == blocks


def test_an_elastic_replica_hits_a_prefix_its_finished_request_left() -> None:
    shared = tokens(64, 5000)
    hits = {}
    for bound in (16000, 0):
        pool = tiny_pool(16)
        model = engine(pool, max_num_batched_tokens=256, max_cached_tokens=bound)
        clock = Clock(model)
        model.add(request("first", [*shared, *tokens(16, 1)], max_tokens=2), 0.0)
        clock.run()
        kept = model.kv.kept_blocks()
        # Its 5 prompt blocks carry hashes; the decode block went back to the pool.
        assert kept == (5 if bound else 0)
        assert free_blocks(pool) == 16 - kept and held(pool, model) == 16
        assert model.stats().kv_usage == 0.0  # kept blocks count as free, as in vLLM
        model.add(request("second", [*shared, *tokens(16, 2)], max_tokens=2), clock.now)
        clock.run()
        hits[bound] = model.stats().prefix_hits
    assert hits == {16000: 64, 0: 0}  # bound 0: freed prefixes go back at once


def test_the_bound_keeps_the_most_recently_freed_blocks() -> None:
    pool = tiny_pool(16)
    model = engine(pool, max_num_batched_tokens=256, max_cached_tokens=32)  # two blocks
    clock = Clock(model)
    for name, start in (("a", 100), ("b", 200)):
        model.add(request(name, tokens(32, start), max_tokens=1), clock.now)
        clock.run()
        assert model.kv.kept_blocks() == 2 and free_blocks(pool) == 14
    model.add(request("b-again", tokens(32, 200), max_tokens=1), clock.now)
    clock.run()
    assert model.stats().prefix_hits == 16  # b was kept (1 of its 2 blocks can hit)
    model.add(request("a-again", tokens(32, 100), max_tokens=1), clock.now)
    clock.run()
    assert model.stats().prefix_hits == 16  # a was evicted when b was freed
    assert model.kv.kept_blocks() == 2 and held(pool, model) == 16


def test_a_short_pool_takes_kept_blocks_back_least_recently_freed_first() -> None:
    pool = tiny_pool(8)
    owner = engine(pool, max_num_batched_tokens=256)
    neighbour = engine(pool, max_num_batched_tokens=256)
    clock = Clock(owner)
    prompt = tokens(64, 100)
    owner.add(request("cached", prompt, max_tokens=1), 0.0)
    clock.run()
    assert owner.kv.kept_blocks() == 4 and free_blocks(pool) == 4

    # Kept blocks are the owner's: a neighbour cannot reclaim them (KVCached: only a
    # memory limit set with kvctl evicts them), so its 6-block request waits.
    neighbour.add(request("blocked", 96, max_tokens=1), 0.0)
    assert Clock(neighbour).step().num_tokens == 0
    assert held(pool, owner, neighbour) == 8

    # The owner itself needs 6: 4 from the pool and 2 of its kept blocks, the
    # least recently freed first, which is the tail of the freed prompt.
    owner.add(request("big", 96, max_tokens=30), clock.now)
    clock.step()
    assert free_blocks(pool) == 0 and owner.kv.kept_blocks() == 2
    assert owner.kv.match_prefix(block_hashes(prompt, 16), 4) == owner.kv.match_prefix(
        block_hashes(prompt, 16), 2
    )
    assert len(owner.kv.match_prefix(block_hashes(prompt, 16), 4)) == 2
    assert held(pool, owner, neighbour) == 8
    clock.run()
    assert held(pool, owner, neighbour) == 8 and owner.stats().used_blocks == 0
