"""Profiles composed from the hardware tables: names, numbers, sources, and what cannot run."""

import dataclasses

import pytest

from loadtest.sim.hardware import compose, parse, retarget, tables
from loadtest.sim.layout import on_hardware, seats
from loadtest.sim.profiles import COMPOSED, GIB, PROFILES, UnknownProfile, load_profile


def test_every_shipped_composed_profile_cites_its_gpu_model_and_calibration() -> None:
    data = tables()
    for name in COMPOSED:
        profile = load_profile(name)
        spec = parse(name)
        assert spec.name() == name  # the name says exactly what it is made of
        gpu, model = data["gpus"][spec.gpu], data["models"][spec.model]
        engine = data["engines"][spec.engine]["gpus"][spec.gpu]
        for source in (*gpu["sources"], *model["sources"], *engine["sources"]):
            assert source in profile.sources
        assert profile.model == model["hf"] and profile.kv_tokens() > 0


def test_weight_bytes_follow_the_format_and_keep_embeddings_in_bf16() -> None:
    # Llama-3.1-70B: 70.55e9 parameters, of which 2 x 1.05e9 in the embedding and lm_head.
    table = 2 * 1_050_673_152
    fp8 = load_profile("llama-3.1-70b-fp8-b200")
    assert fp8.weight_bytes == pytest.approx((70.55e9 - table) * 1 + table * 2)  # 72.65 GB
    fp4 = load_profile("llama-3.1-70b-fp4-b200")
    assert fp4.weight_bytes == pytest.approx((70.55e9 - table) * 4.5 / 8 + table * 2)  # 42.71
    # A step streams everything but the input embedding, which it gathers a row a token.
    assert fp8.weight_bytes - fp8.weight_bytes_read(1) == pytest.approx(table / 2 * 2)
    # GGUF Q8_0 quantizes every tensor, embeddings included: 8.5 bits a parameter.
    q8 = load_profile("qwen3-32b-q8_0-gb10-ollama")
    assert q8.weight_bytes == pytest.approx(32.76e9 * 8.5 / 8)


def test_kv_bytes_follow_the_config_and_the_kv_dtype() -> None:
    # 80 layers x 8 KV heads x 128 dims x 2 (K, V) x 2 bytes: 320 KiB a token in BF16.
    assert load_profile("llama-3.1-70b-fp8-rtxpro6000").kv_bytes_per_token == 327_680
    assert load_profile("llama-3.1-70b-fp8-kvfp8-rtxpro6000").kv_bytes_per_token == 163_840
    # 70B FP8 leaves one RTX PRO 6000 (95.59 GiB) room for about 50k tokens of BF16 KV.
    tokens = load_profile("llama-3.1-70b-fp8-rtxpro6000").kv_tokens()
    assert tokens == pytest.approx(
        (0.9 * 95.59 - 3.0) * GIB / 327_680 - 72.65e9 / 327_680, rel=0.01
    )


def test_the_compute_rate_is_the_formats_and_the_efficiency_the_engines() -> None:
    b200 = tables()["gpus"]["b200"]
    assert load_profile("llama-3.1-70b-fp4-b200").flops == b200["flops"]["fp4"]
    assert load_profile("llama-3.1-70b-fp8-b200").flops == b200["flops"]["fp8"]
    assert load_profile("llama-3.1-70b-bf16-h100-tp4").flops == 989.4e12
    mixtral = load_profile("mixtral-8x7b-bf16-h100-tp2")
    hand_made = load_profile("mixtral-8x7b-h100-tp2")
    assert mixtral.hbm_efficiency == pytest.approx(hand_made.hbm_efficiency)
    assert mixtral.flops_efficiency == pytest.approx(hand_made.flops_efficiency, rel=0.01)


def test_composing_the_hand_made_h100_profiles_gives_nearly_their_numbers() -> None:
    """The tables reproduce the calibrated H100 profiles: same KV capacity, ITL within 8% (the
    composed ones stream about 1 GB less, the input embedding, and the TP one pays its
    all-reduce bytes too)."""
    for made, composed in (
        ("llama-3.1-8b-h100", "llama-3.1-8b-bf16-h100"),
        ("qwen2.5-7b-h100", "qwen2.5-7b-bf16-h100"),
        ("mixtral-8x7b-h100-tp2", "mixtral-8x7b-bf16-h100-tp2"),
    ):
        a, b = load_profile(made), load_profile(composed)
        assert b.kv_tokens() == pytest.approx(a.kv_tokens(), rel=0.01)
        for batch in (1, 64, 256):
            assert b.decode_itl(batch, 1200) == pytest.approx(a.decode_itl(batch, 1200), rel=0.08)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("gpt-5-fp8-h100", "no model it starts with"),
        ("llama-3.1-8b-int3-h100", "expected <model>-<weights>"),
        ("llama-3.1-8b-fp8-a100", "expected <model>-<weights>"),
        ("llama-3.1-8b-fp8-h100-tp0", "needs a positive degree"),
        ("llama-3.1-8b-fp8-h100-sglang", "is not tp<N>, pp<M> or an engine"),
        ("llama-3.1-8b-fp4-h100", "has no FP4 tensor cores"),
        ("llama-3.1-70b-bf16-h100", "141.1 GB of weights need 131.4 GiB per GPU; a h100 has"),
        ("qwen3-32b-fp8-gb10-tp2-ollama", "modelled on one GPU only"),
    ],
)
def test_names_that_cannot_run_say_why(name: str, message: str) -> None:
    with pytest.raises(UnknownProfile, match=message):
        load_profile(name)
    with pytest.raises(UnknownProfile):
        compose(name)


def test_tensor_parallel_pays_latency_per_layer_and_bytes_per_token_by_link() -> None:
    nvlink = load_profile("llama-3.1-70b-bf16-h100-tp4")
    pcie = load_profile("llama-3.1-70b-bf16-rtxpro6000-tp4")
    links = tables()["links"]
    # 80 layers x 2 all-reduces, each one small message.
    assert nvlink.allreduce_seconds == pytest.approx(160 * links["nvlink4"]["latency"])
    assert pcie.allreduce_seconds == pytest.approx(160 * links["pcie5"]["latency"])
    # Ring all-reduce: each GPU moves 2 (n - 1) / n of the 16 KiB a token a layer, twice.
    assert nvlink.allreduce_bytes_per_token == pytest.approx(160 * 8192 * 2 * 1.5)
    for profile in (nvlink, pcie):
        free = dataclasses.replace(profile, allreduce_seconds=0.0, allreduce_bandwidth=0.0)
        comms = profile.allreduce_seconds + 256 * profile.allreduce_bytes_per_token / (
            profile.allreduce_bandwidth
        )
        assert profile.step_time(256, 0) - free.step_time(256, 0) == pytest.approx(comms)
    # The same step costs more over PCIe than over NVLink, in latency and in bandwidth.
    assert pcie.allreduce_seconds > 2 * nvlink.allreduce_seconds
    assert pcie.allreduce_bandwidth < nvlink.allreduce_bandwidth / 10
    # TP8 on two nodes' worth of GPUs crosses InfiniBand; within a node it stays on NVLink.
    assert load_profile("llama-3.1-70b-bf16-h100-tp8").allreduce_bandwidth == 450e9
    assert compose("llama-3.1-70b-bf16-h100-tp16").allreduce_bandwidth == 50e9


def test_pipeline_parallel_streams_all_weights_per_token_and_splits_the_rest() -> None:
    """PP2 does not speed one sequence up (its token crosses both stages in turn), but it
    spreads KV and compute over the stages and holds twice the KV; TP2 halves the weights'
    time. A stage boundary across nodes costs the network's latency."""
    tp1 = load_profile("llama-3.1-70b-fp4-kvfp8-rtxpro6000")
    pp2 = load_profile("llama-3.1-70b-fp4-kvfp8-rtxpro6000-pp2")
    tp2 = compose("llama-3.1-70b-fp4-kvfp8-rtxpro6000-tp2")
    one = tp1.step_time(1, 1000, 1000, 1)
    assert pp2.step_time(1, 1000, 1000, 1) == pytest.approx(one + pp2.pp_latency, rel=0.001)
    assert tp2.step_time(1, 1000, 1000, 1) < 0.7 * one
    # Two sequences fill both stages: KV reads split over them, weights still read per stage.
    kv = 2 * 20_000
    assert pp2.step_time(2, kv, kv, 2) < tp1.step_time(2, kv, kv, 2)
    assert pp2.kv_tokens() > 2.5 * tp1.kv_tokens()  # half the weights a GPU, twice the GPUs
    # Compute-bound prefill splits over the stages.
    chunk = 8192
    assert pp2.step_time(chunk, 0, 0, 2) == pytest.approx(
        tp1.step_time(chunk, 0, 0, 1) / 2, rel=0.1
    )
    across = compose("llama-3.1-70b-bf16-h100-tp8-pp2")
    assert across.pp_latency == tables()["links"]["ib-ndr"]["latency"]
    assert across.pp_bandwidth == 50e9


def test_the_reference_layout_moves_to_other_hardware_seat_by_seat() -> None:
    remap = on_hardware("b200", "fp4")
    assert remap == {
        "llama-3.1-8b-h100": "llama-3.1-8b-fp4-b200",
        "qwen2.5-7b-h100": "qwen2.5-7b-fp4-b200",
        "mixtral-8x7b-h100-tp2": "mixtral-8x7b-fp4-b200-tp2",
    }
    assert [seat.profile for seat in seats("baseline", remap)][::2] == list(remap.values())
    assert retarget("mixtral-8x7b-h100-tp2", kv_dtype="fp8") == "mixtral-8x7b-bf16-kvfp8-h100-tp2"
    assert on_hardware() == {}
    explicit = on_hardware(profiles={"mixtral-8x7b-h100-tp2": "mixtral-8x7b-fp4-b200"})
    assert explicit == {"mixtral-8x7b-h100-tp2": "mixtral-8x7b-fp4-b200"}
    with pytest.raises(ValueError, match=r"the layout.s llama-3\.1-8b-h100: .* no FP4"):
        on_hardware(weights="fp4")
    with pytest.raises(ValueError, match="'gpt-5' is not a profile of the layout"):
        on_hardware(profiles={"gpt-5": "llama-3.1-8b-fp4-b200"})


def test_shipped_list_has_no_duplicates_and_hand_made_names_win() -> None:
    assert len(set(PROFILES)) == len(PROFILES)
    # A hand-made name is also a composable one; profiles.yaml's numbers are what load.
    assert load_profile("llama-3.1-8b-h100").step_weight_bytes == 0.0
    assert compose("llama-3.1-8b-h100").step_weight_bytes > 0
