"""Models sharing a GPU: one elastic pool counted in bytes, static shares, and GPU time."""

import pytest

from loadtest.sim.engine import EngineConfig, EngineModel
from loadtest.sim.engines import build_engines, deployed_replicas
from loadtest.sim.fleet import fleet_replicas, partition
from loadtest.sim.gpus import SharedGpu, block_bytes, kv_bytes, shared_pool
from loadtest.sim.layout import COLOCATED, placements
from loadtest.sim.profiles import GIB, load_profile
from loadtest.sim.replica import elastic_pool
from loadtest.sim.virtual import VirtualRequest, run_virtual
from routers.round_robin import RoundRobin
from tests.loadtest.sim.helpers import TINY, Clock, engine, request, tiny_pool

LLAMA = load_profile("llama-3.1-8b-h100")
QWEN = load_profile("qwen2.5-7b-h100")


def test_one_pool_serves_models_with_different_kv_sizes_in_bytes() -> None:
    llama_block, qwen_block = block_bytes(LLAMA, 16), block_bytes(QWEN, 16)
    assert (llama_block, qwen_block) == (16 * 131072, 16 * 57344)
    pool = shared_pool("gpu0", [(LLAMA, 16, 10, 0.45), (QWEN, 16, 10, 0.45)])
    assert pool.total_bytes == 10 * llama_block + 10 * qwen_block
    config = EngineConfig(kv_mode="elastic", prefix_caching=False, max_num_batched_tokens=512)
    llama, qwen = EngineModel(LLAMA, config, pool), EngineModel(QWEN, config, pool)
    # Each sees the whole pool in its own blocks: Qwen's are 2.3x smaller, so more of them.
    assert llama.kv.num_blocks == pool.total_bytes // llama_block == 14
    assert qwen.kv.num_blocks == pool.total_bytes // qwen_block == 32
    llama.add(request("l", 16 * 12, max_tokens=4), 0.0)
    llama.step(0.0)  # 12 Llama blocks taken: what is left holds 5 of Qwen's, not 10
    assert pool.free_bytes == pool.total_bytes - 12 * llama_block
    assert qwen.kv.num_free() == (10 * qwen_block - 2 * llama_block) // qwen_block == 5
    qwen.add(request("q", 16 * 8, max_tokens=4), 0.0)
    assert qwen.step(0.0).num_tokens == 0  # 8 blocks do not fit in 5: it waits
    llama.abort("l")
    assert qwen.step(0.0).first_token == ("q",)
    assert pool.free_bytes == pool.total_bytes - 8 * qwen_block
    assert llama.stats().kv_usage == 0.0
    assert qwen.stats().kv_usage == pytest.approx(8 * qwen_block / pool.total_bytes)


def test_a_pool_holds_what_the_static_split_would_have_given_its_engines() -> None:
    static = [kv_bytes(profile, 16, None, 0.45) for profile in (LLAMA, QWEN)]
    pool = shared_pool("gpu0", [(LLAMA, 16, None, 0.45), (QWEN, 16, None, 0.45)])
    assert pool.total_bytes == sum(static)
    # That is 90% of the GPU less both engines' weights and reserved memory (block rounding).
    whole = (0.9 * LLAMA.gpu_memory_gib - 2 * LLAMA.reserved_gib) * GIB
    expected = whole - LLAMA.weight_bytes - QWEN.weight_bytes
    assert pool.total_bytes == pytest.approx(expected, abs=2 * block_bytes(LLAMA, 16))
    with pytest.raises(ValueError, match="no room for KV"):
        shared_pool("gpu0", [(LLAMA, 16, None, 0.2), (QWEN, 16, None, 0.2)])


@pytest.mark.parametrize("fleet", ["colocated-static", "colocated-elastic"])
def test_the_colocated_layout_puts_two_models_on_each_of_four_gpus(fleet: str) -> None:
    placed = placements(fleet)
    assert [p.seat for p in placed] == list(COLOCATED)
    assert sorted({p.gpu for p in placed}) == ["gpu0", "gpu1", "gpu2", "gpu3"]
    assert all(p.memory_share == pytest.approx(0.45) for p in placed)
    specs = deployed_replicas(fleet)
    assert {spec.model for spec in specs} == {
        "meta-llama/Llama-3.1-8B-Instruct",
        "Qwen/Qwen2.5-7B-Instruct",
    }
    engines = build_engines(specs)
    if fleet == "colocated-static":
        assert all(spec.pool is None for spec in specs)
        llama = next(e for spec, _, e in engines if spec.profile == LLAMA.name)
        assert llama.kv.num_blocks == LLAMA.kv_blocks(16, 0.45)
    else:
        assert [spec.pool for spec in specs] == [spec.gpu for spec in specs]
        pools = {id(e.kv.pool) for _, _, e in engines}
        assert len(pools) == 4  # one per GPU, shared by its two engines


def test_the_http_fleet_keeps_a_gpus_engines_in_one_worker_with_one_pool() -> None:
    replicas = fleet_replicas("colocated-elastic", 9000, 1.0)
    assert len(replicas) == 8
    for group in partition(replicas, 3):
        gpus = [r.config.gpu for r in group]
        assert all(gpus.count(gpu) == 2 for gpu in gpus), gpus
    gpu0 = [r.config for r in replicas if r.config.gpu == "gpu0"]
    pool = elastic_pool(gpu0)
    assert (
        pool.total_bytes
        == shared_pool("gpu0", [(LLAMA, 16, None, 0.45), (QWEN, 16, None, 0.45)]).total_bytes
    )


def test_an_elastic_engine_grows_into_its_idle_neighbours_memory() -> None:
    """Two tiny engines, 8 blocks each when split; a burst on one of them."""

    def peak_running(elastic: bool) -> tuple[int, int]:
        pool = tiny_pool(16) if elastic else None
        busy = engine(pool, num_blocks=None if elastic else 8, max_num_batched_tokens=512)
        engine(pool, num_blocks=None if elastic else 8)  # the idle neighbour
        for i in range(8):
            busy.add(request(f"r{i}", 30, max_tokens=2), 0.0)  # two blocks each
        clock = Clock(busy)
        clock.step()
        return busy.stats().running, busy.stats().waiting

    assert peak_running(elastic=False) == (4, 4)
    assert peak_running(elastic=True) == (8, 0)


def gpu_time(busy_neighbours: int) -> float:
    """The first step of an engine with `busy_neighbours` busy engines on its GPU."""
    gpu = SharedGpu("gpu0")
    config = EngineConfig(max_num_batched_tokens=512)
    mine = EngineModel(TINY, config, gpu=gpu)
    for n in range(busy_neighbours):
        other = EngineModel(TINY, config, gpu=gpu)
        other.add(request(f"o{n}", 64, max_tokens=100), 0.0)
        other.step(0.0)
    EngineModel(TINY, config, gpu=gpu)  # resident, idle: costs nothing
    mine.add(request("mine", 256, max_tokens=4), 0.0)
    return mine.step(0.0).duration


def test_co_resident_engines_busy_at_once_take_turns_on_the_gpu() -> None:
    alone = gpu_time(0)
    overhead = TINY.step_overhead_seconds
    assert alone == pytest.approx(TINY.step_time(256, 0, 256 * 257 // 2))
    assert gpu_time(1) == pytest.approx(overhead + 2 * (alone - overhead))
    assert gpu_time(2) == pytest.approx(overhead + 3 * (alone - overhead))


def test_in_virtual_time_a_busy_neighbour_slows_a_models_tokens() -> None:
    """Llama's mean gap between tokens on colocated-static, with Qwen idle and with Qwen
    busy on the same GPUs (same Llama requests)."""
    llama = "meta-llama/Llama-3.1-8B-Instruct"
    qwen = "Qwen/Qwen2.5-7B-Instruct"

    def arrivals(with_qwen: bool) -> list[VirtualRequest]:
        out = []
        for i in range(40):
            out.append(VirtualRequest(i * 0.05, llama, list(range(i * 1000, i * 1000 + 300)), 200))
            if with_qwen:
                prompt = list(range(10**6 + i * 1000, 10**6 + i * 1000 + 300))
                out.append(VirtualRequest(i * 0.05 + 0.01, qwen, prompt, 200))
        return out

    def llama_itl(with_qwen: bool) -> float:
        specs = deployed_replicas("colocated-static")
        result = run_virtual(specs, RoundRobin(), arrivals(with_qwen))
        gaps = [r.mean_itl for r in result.records if r.model == llama and r.mean_itl]
        assert len(gaps) == 40 and all(r.status == "ok" for r in result.records)
        return sum(gaps) / len(gaps)

    alone, shared = llama_itl(False), llama_itl(True)
    assert shared > 1.5 * alone, (alone, shared)
