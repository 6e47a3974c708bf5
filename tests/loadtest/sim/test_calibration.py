"""The composed profiles against published figures, each within 15% and each naming its source.

Where a figure the issue quotes was not found, or cannot be compared, the test checks the
stated reason instead (docs/simulator.md, "Calibration" lists every figure, matched or not).
"""

from functools import cache

import pytest

from loadtest.sim.engine import EngineConfig, EngineModel
from loadtest.sim.engine_kind import make_engine
from loadtest.sim.profiles import Profile, load_profile
from loadtest.sim.types import SimRequest
from loadtest.sim.virtual import VirtualReplica, VirtualRequest, run_virtual
from routers.round_robin import RoundRobin

WITHIN = 0.15
LMSYS = "github.com/lm-sys/lm-sys.github.io blog/2025-10-13-nvidia-dgx-spark.md (Oct 13 2025)"
TRTLLM = "github.com/NVIDIA/TensorRT-LLM docs/source/developer-guide/perf-overview.md (03e27c7d)"
LAMBDA = "github.com/LambdaLabsML/vllm-benchmark benchmark_v0.md (0e8fc5d0, Sept 2024)"


def decode_rate(profile: Profile, batch: int, context: int) -> float:
    """Output tokens per second of a pure decode step: `batch` sequences of `context`."""
    return batch / profile.decode_itl(batch, context)


def prefill_rate(profile: Profile, prompt: int) -> float:
    """Prompt tokens per second of one prompt in one chunk, attention included."""
    return prompt / profile.step_time(prompt, 0, prompt * (prompt + 1) // 2, 1)


@cache
def max_throughput(name: str, isl: int, osl: int, requests: int) -> float:
    """Output tokens/s per GPU with every request queued at once (trtllm-bench throughput's
    offline scenario): max_num_seqs 2048 so that the KV cache, not a seat limit, bounds the
    batch."""
    profile = load_profile(name)
    config = EngineConfig(max_num_seqs=2048, max_num_batched_tokens=8192, prefix_caching=False)
    engine = EngineModel(profile, config)
    for index in range(requests):
        ids = list(range(index * isl, (index + 1) * isl))
        engine.add(SimRequest(str(index), ids, max_tokens=osl, ignore_eos=True), 0.0)
    now = 0.0
    for _ in range(100_000):
        if not engine.has_work():
            break
        now += engine.step(now).duration
    assert not engine.has_work()
    return requests * osl / now / profile.gpus


# -- DGX Spark (GB10), LMSYS's review, SGLang ------------------------------------------------


def test_spark_llama_8b_fp8_decodes_one_stream_at_20_5_tokens_per_second() -> None:
    """LMSYS (source above): Llama-3.1-8B FP8, SGLang, batch 1: 20.5 tokens/s."""
    rate = decode_rate(load_profile("llama-3.1-8b-fp8-gb10"), 1, 1024)
    assert rate == pytest.approx(20.5, rel=WITHIN), LMSYS


def test_spark_llama_70b_fp8_decodes_one_stream_at_2_7_tokens_per_second() -> None:
    """LMSYS: Llama-3.1-70B FP8, SGLang, batch 1: 2.7 tokens/s."""
    rate = decode_rate(load_profile("llama-3.1-70b-fp8-gb10"), 1, 1024)
    assert rate == pytest.approx(2.7, rel=WITHIN), LMSYS


def test_spark_prefill_rates_match_lmsys() -> None:
    """LMSYS: prefill 7,991 tokens/s (8B FP8) and 803 (70B FP8). The prompt length is not
    stated; 2,048 tokens are assumed (attention is 3-4% of the FLOPs at that length)."""
    assert prefill_rate(load_profile("llama-3.1-8b-fp8-gb10"), 2048) == pytest.approx(
        7991, rel=WITHIN
    ), LMSYS
    assert prefill_rate(load_profile("llama-3.1-70b-fp8-gb10"), 2048) == pytest.approx(
        803, rel=WITHIN
    ), LMSYS


def test_spark_llama_8b_fp8_batch_32_decodes_at_368_tokens_per_second() -> None:
    """LMSYS: 368 tokens/s at batch 32. Their lengths are in a spreadsheet not retrieved: a
    1k prompt with a 1k answer is assumed (1,536 tokens of context on average). At 1,024 of
    context the model would say 456 (+24%): this match rests on that assumption."""
    profile = load_profile("llama-3.1-8b-fp8-gb10")
    assert decode_rate(profile, 32, 1536) == pytest.approx(368, rel=WITHIN), LMSYS
    assert decode_rate(profile, 32, 1024) > 368 * (1 + WITHIN)


# -- TensorRT-LLM's max-throughput table: per-GPU ceilings, Llama-3.3-70B (same shape) --------
# FP8 KV is assumed (NVIDIA's ModelOpt checkpoints declare kv_cache_quant_algo FP8; the table
# does not say). B200 FP4 is calibrated on its 1k/1k and 8k/1k rows (engines.yaml); every other
# row uses the H100's efficiencies unchanged. Rows the model misses by more than 15% (long
# prompts, 1k/8k on B200) are listed in docs/simulator.md with the reason.


@pytest.mark.parametrize(
    ("name", "isl", "osl", "requests", "published"),
    [
        ("llama-3.1-70b-fp4-kvfp8-b200", 1000, 1000, 3000, 6920),
        ("llama-3.1-70b-fp4-kvfp8-b200", 8192, 1024, 1500, 1362),
        ("llama-3.1-70b-fp4-kvfp8-rtxpro6000", 1000, 1000, 3000, 1724),
        ("llama-3.1-70b-fp4-kvfp8-rtxpro6000-pp2", 1000, 1000, 3000, 1901),
        ("llama-3.1-70b-fp4-kvfp8-rtxpro6000-pp2", 8192, 1024, 1500, 327),
        ("llama-3.1-70b-fp8-kvfp8-h100-tp2", 1000, 1000, 3000, 2209),
        ("llama-3.1-70b-fp8-kvfp8-h200-tp2", 1000, 1000, 3000, 2587),
        ("llama-3.1-70b-fp8-kvfp8-h200-tp2", 1024, 8192, 1500, 2009),
    ],
)
def test_per_gpu_ceilings_match_tensorrt_llm(
    name: str, isl: int, osl: int, requests: int, published: float
) -> None:
    simulated = max_throughput(name, isl, osl, requests)
    assert simulated == pytest.approx(published, rel=WITHIN), f"{TRTLLM}: {name} {isl}/{osl}"


def test_pipeline_parallel_2_on_rtx_pro_6000_gains_per_gpu_as_tensorrt_llm_measured() -> None:
    """TensorRT-LLM: RTX PRO 6000 TP1 1,724 and TP1 PP2 1,901 tokens/s per GPU at 1k/1k, a
    gain of 10%: half the weights a GPU leave room for three times the KV."""
    tp1 = max_throughput("llama-3.1-70b-fp4-kvfp8-rtxpro6000", 1000, 1000, 3000)
    pp2 = max_throughput("llama-3.1-70b-fp4-kvfp8-rtxpro6000-pp2", 1000, 1000, 3000)
    assert pp2 / tp1 == pytest.approx(1901 / 1724, rel=WITHIN), TRTLLM


# -- H100, Lambda's vLLM report ---------------------------------------------------------------


def test_two_h100_hold_llama_70b_fp8_at_a_128k_window() -> None:
    """Lambda: 2x H100 serve Llama-3.1-70B-Instruct-FP8 up to 128k context (one H100 only up
    to 4k: the model leaves one H100 3.3k tokens of KV with its 3 GiB reserve, so it says
    4k would not fit; that row is not matched, see docs/simulator.md)."""
    assert load_profile("llama-3.1-70b-fp8-h100-tp2").kv_tokens() >= 131_072, LAMBDA
    assert load_profile("llama-3.1-8b-fp8-h100").kv_tokens() >= 131_072, LAMBDA


# -- The DGX Spark figures that were not found: their stated reasons -----------------


def test_64_streams_of_32k_do_not_fit_qwen3_32b_on_a_spark() -> None:
    """The issue quotes ~300-400 tokens/s for Qwen3-32B FP8 on vLLM at 64 streams of 32k with
    ~66 GB of KV; no source was found, and the memory says it cannot be: 66 GiB of KV at
    0.85 of the Spark hold fewer than 20 sequences of 32k even in FP8."""
    for name in ("qwen3-32b-fp8-gb10", "qwen3-32b-fp8-kvfp8-gb10"):
        profile = load_profile(name)
        kv_gib = profile.kv_tokens(0.85) * profile.kv_bytes_per_token / 2**30
        assert kv_gib == pytest.approx(66.4, rel=0.02)
        assert profile.kv_tokens(0.85) / 32768 < 20


def test_ollama_runs_one_request_at_a_time_by_default_so_8_streams_get_one_streams_rate() -> None:
    """The issue's ~40-80 tokens/s for Ollama at 8 streams was not found; Ollama's default
    OLLAMA_NUM_PARALLEL=1 (since v0.10.0) serves them one after another, so 8 streams get
    about the single-stream rate in total, and only more slots raise it."""
    profile = load_profile("qwen3-32b-q8_0-gb10-ollama")
    model = profile.model

    def total_rate(slots: int, users: int) -> float:
        config = EngineConfig(max_num_seqs=slots, num_blocks=slots * 4096 // 16)
        requests = [
            VirtualRequest(0.0, model, [index, *range(300)], max_tokens=100, ignore_eos=True)
            for index in range(4 * users)
        ]
        replica = VirtualReplica("r", profile.name, config)
        result = run_virtual([replica], RoundRobin(), requests, concurrency=users)
        return sum(r.output_tokens for r in result.records) / result.sim_seconds

    alone = total_rate(1, 1)
    assert 4.0 < alone < 6.8  # derived from 34.8 GB at 273 GB/s: 4.8-6.8 at 60-85% of it
    assert total_rate(1, 8) == pytest.approx(alone, rel=0.05)
    assert total_rate(8, 8) > 5 * alone


def test_the_ollama_engine_is_what_serves_an_ollama_profile() -> None:
    engine = make_engine(load_profile("qwen3-32b-q8_0-gb10-ollama"), EngineConfig(max_num_seqs=1))
    assert type(engine).__name__ == "SlotEngine"
