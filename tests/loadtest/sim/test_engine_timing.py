"""Step time: the roofline of the profile, and the calibration of the reference profiles."""

import dataclasses

import pytest

from loadtest.sim.engine import EngineConfig, EngineModel
from loadtest.sim.profiles import PROFILES, Profile, UnknownProfile, load_profile
from loadtest.sim.types import SimRequest
from tests.loadtest.sim.helpers import TINY, Clock, engine, request


def decode_step(profile: Profile, batch: int, prompt: int) -> float:
    """Duration of the first pure decode step of `batch` requests with `prompt`-token prompts."""
    model = EngineModel(profile, EngineConfig(max_num_seqs=256, max_num_batched_tokens=65536))
    for index in range(batch):
        ids = list(range(index * 100_000, index * 100_000 + prompt))
        model.add(SimRequest(f"r{index}", ids, max_tokens=10, ignore_eos=True), 0.0)
    clock = Clock(model)
    for _ in range(100):  # prefill, chunked over several steps for a big batch
        result = clock.step()
        if result.num_tokens == batch:
            assert len(result.emitted) == batch and model.stats().running == batch
            return result.duration
    raise AssertionError("no pure decode step")


def test_every_shipped_profile_loads_with_its_sources() -> None:
    for name in PROFILES:
        profile = load_profile(name)
        assert profile.name == name and profile.kv_tokens() > 0
        assert name == "tiny" or profile.sources
    with pytest.raises(UnknownProfile, match=r"hand-made profiles: llama-3\.1-8b-h100"):
        load_profile("gpt-5")


def test_step_time_is_the_roofline_of_the_profile() -> None:
    # tiny: 5e8 weight bytes at 1e12 B/s, 1e5 KV bytes per token, 2e9 FLOP per token at 1e15.
    assert TINY.step_time(1, 0) == pytest.approx(1e-4 + 5e-4)
    assert TINY.step_time(1, 1000) == pytest.approx(1e-4 + 5e-4 + 1e-4)
    assert TINY.step_time(1000, 0) == pytest.approx(1e-4 + 2e-3)  # compute-bound prefill
    assert TINY.step_time(250, 0) == pytest.approx(1e-4 + 5e-4)  # the crossover


def test_decode_steps_grow_with_the_batch_as_the_profile_says() -> None:
    durations = []
    for batch in (1, 4, 16, 32):
        model = engine(max_num_seqs=64, max_num_batched_tokens=8192, num_blocks=1024)
        for index in range(batch):
            model.add(request(f"r{index}", 255, max_tokens=8), 0.0)
        clock = Clock(model)
        clock.step()
        decode = clock.step()
        assert decode.num_tokens == batch
        # each request holds 255 prompt tokens and its first output token
        assert decode.duration == pytest.approx(TINY.step_time(batch, batch * 256))
        durations.append(decode.duration)
    assert durations == sorted(set(durations)) and durations[-1] > durations[0] * 2


def test_tensor_parallel_splits_bytes_and_adds_the_all_reduce() -> None:
    mixtral = load_profile("mixtral-8x7b-h100-tp2")
    one_token_bytes = mixtral.weight_bytes_read(1)
    assert one_token_bytes == pytest.approx(93.4e9 - 90.2e9 * 0.75)  # 2 of 8 experts
    assert mixtral.weight_bytes_read(512) == pytest.approx(93.4e9)  # every expert touched
    expected = 0.00095 + one_token_bytes / (2 * 3.35e12 * 0.6) + 0.0006
    assert mixtral.step_time(1, 0) == pytest.approx(expected)


def test_llama_8b_matches_its_calibration_targets() -> None:
    """About 7 ms ITL alone, about 22 ms at batch 256 (1,200-token contexts), 410k-450k KV."""
    llama = load_profile("llama-3.1-8b-h100")
    assert decode_step(llama, 1, 1199) == pytest.approx(0.007, rel=0.05)
    assert decode_step(llama, 256, 1199) == pytest.approx(0.022, rel=0.05)
    assert 410_000 <= llama.kv_tokens() <= 450_000
    assert llama.kv_blocks(16) == llama.kv_tokens() // 16


def test_kv_capacity_follows_the_memory_share_the_same_way_for_every_fleet() -> None:
    """(share x 79.65 GiB - weights per GPU - 3 GiB) / KV bytes per token per GPU: vLLM's
    default share gives the capacities derived by hand in profiles.yaml's comments."""
    by_hand = {  # (0.9 * 79.65 - weights GiB per GPU - 3) GiB / KV bytes per token per GPU
        "llama-3.1-8b-h100": (71.685 - 14.957 - 3.0) * 2**30 / 131072,
        "qwen2.5-7b-h100": (71.685 - 14.184 - 3.0) * 2**30 / 57344,
        "mixtral-8x7b-h100-tp2": (71.685 - 43.492 - 3.0) * 2**30 / 65536,
    }
    for name, tokens in by_hand.items():
        profile = load_profile(name)
        assert profile.kv_tokens() == pytest.approx(tokens, rel=0.002)
        more = profile.kv_tokens(1.0)  # all of the memory: ~8 GiB more per GPU
        extra_gib = 0.1 * 79.65 * profile.tensor_parallel
        assert (more - profile.kv_tokens()) * profile.kv_bytes_per_token == pytest.approx(
            extra_gib * 2**30, rel=0.01
        )
    assert load_profile("tiny").kv_tokens(0.5) == load_profile("tiny").kv_tokens() == 8192


def test_the_reference_models_rank_as_expected_per_token() -> None:
    itl = {name: load_profile(name).decode_itl(1, 1200) for name in PROFILES}
    assert itl["qwen2.5-7b-h100"] < itl["llama-3.1-8b-h100"] < itl["mixtral-8x7b-h100-tp2"]
    crowded = {name: load_profile(name).decode_itl(128, 2000) for name in PROFILES}
    assert crowded["qwen2.5-7b-h100"] < crowded["llama-3.1-8b-h100"]


def test_attention_makes_long_prefills_cost_more_than_linear() -> None:
    # 1e8 FLOP per (query, key) pair at 1e15 FLOP/s: 0.1 us per pair.
    profile = dataclasses.replace(TINY, attention_flops_per_pair=1e8)
    model = EngineModel(profile, EngineConfig(max_num_batched_tokens=512, num_blocks=256))
    model.add(request("long", 1024, max_tokens=2), 0.0)
    clock = Clock(model)
    first, second = clock.step(), clock.step()
    # Chunk 1: 512 queries over themselves; chunk 2: 512 queries over 512 computed + themselves.
    pairs_first = 512 * 513 // 2
    pairs_second = 512 * 512 + 512 * 513 // 2
    assert first.duration == pytest.approx(1e-4 + (2e9 * 512 + 1e8 * pairs_first) / 1e15)
    assert second.duration == pytest.approx(
        1e-4 + max(5e-4 + 512 * 1e-7, (2e9 * 512 + 1e8 * pairs_second) / 1e15)
    )
    assert second.duration > first.duration
    assert second.first_token == ("long",)
