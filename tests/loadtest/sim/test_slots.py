"""Ollama's and llama-server's engine: fixed slots, their own KV, one bounded pass a step."""

import dataclasses

import httpx
import pytest

from loadtest.sim.engine import EngineConfig, RequestRejected
from loadtest.sim.engine_kind import make_engine
from loadtest.sim.kvcache import SharedKVPool
from loadtest.sim.profiles import load_profile
from loadtest.sim.replica import ReplicaConfig
from loadtest.sim.server import create_app
from loadtest.sim.slots import SlotEngine
from loadtest.sim.types import SimRequest, StepResult
from tests.loadtest.sim.helpers import TINY, request

OLLAMA = dataclasses.replace(TINY, engine="ollama", slot_context=1024, batch_tokens=512)
LLAMACPP = dataclasses.replace(OLLAMA, engine="llamacpp", batch_tokens=2048)


def slots(profile=OLLAMA, seqs: int = 2, **config: object) -> SlotEngine:  # type: ignore[no-untyped-def]
    engine = make_engine(profile, EngineConfig(max_num_seqs=seqs, **config))  # type: ignore[arg-type]
    assert isinstance(engine, SlotEngine)
    return engine


def run(engine: SlotEngine, limit: int = 10_000) -> list[StepResult]:
    now, results = 0.0, []
    for _ in range(limit):
        if not engine.has_work():
            return results
        result = engine.step(now)
        now += result.duration
        results.append(result)
    raise AssertionError("still busy")


def test_requests_beyond_the_slots_wait_their_turn_in_order() -> None:
    engine = slots(seqs=2)
    for name in ("a", "b", "c", "d"):
        engine.add(request(name, 100, max_tokens=5), 0.0)
    first = engine.step(0.0)
    assert set(first.first_token) == {"a", "b"}
    assert engine.stats().running == 2 and engine.stats().waiting == 2
    finished = [done.id for result in run(engine) for done in result.finished]
    assert finished == ["a", "b", "c", "d"]
    assert engine.stats().preemptions == 0


def test_each_slot_owns_its_context_and_the_kv_never_pages() -> None:
    engine = slots(seqs=4, num_blocks=4 * 64)  # 4 slots x 1,024 tokens
    assert engine.context == 1024 and engine.stats().num_blocks == 256
    for name in ("a", "b", "c", "d"):
        engine.add(request(name, 1000, max_tokens=200), 0.0)
    usage, now = [], 0.0
    for _ in range(1000):
        if not engine.has_work():
            break
        result = engine.step(now)
        now += result.duration
        usage.append(engine.stats().kv_usage)
        assert all(done.preemptions == 0 for done in result.finished)
    # Contexts grow to the slot's limit (1,000 + 200 > 1,024) and no further.
    assert max(usage) == pytest.approx(1.0) and not engine.has_work()


def test_ollama_keeps_the_end_of_a_long_prompt_and_llama_server_refuses_it() -> None:
    ollama = slots(seqs=1)
    ollama.add(request("long", 3000, max_tokens=3), 0.0)
    (done,) = [d for r in run(ollama) for d in r.finished]
    assert done.prompt_tokens == 1023 and done.output_tokens == 3
    server = slots(LLAMACPP, seqs=1)
    with pytest.raises(RequestRejected, match="exceeds the available context size"):
        server.add(request("long", 3000, max_tokens=3), 0.0)


def test_ollama_passes_hold_512_tokens_so_a_long_prompt_holds_back_decoding() -> None:
    """A 2,000-token prompt arriving next to a decoding slot: Ollama fills each 512-token
    pass in turn, so some passes carry no token of the decoding request; llama-server puts
    every decoding token first and the prompt after it, up to 2,048."""
    emitted_in_prompt_passes = {}
    for profile in (OLLAMA, LLAMACPP):
        engine = slots(profile, seqs=2)
        engine.add(request("short", 50, max_tokens=1), 0.0)  # slot 0, free after one pass
        engine.add(request("talk", 50, max_tokens=200), 0.0)  # slot 1
        results = [engine.step(0.0), engine.step(1.0)]  # prefill, then decoding
        engine.add(request("long", 1000, max_tokens=2), 2.0)  # slot 0: before talk in turn
        now = 2.0
        while "long" not in (ids := [r for res in results for r in res.first_token]):
            results.append(engine.step(now))
            now += 1.0
        passes = results[2:]
        emitted_in_prompt_passes[profile.engine] = [("talk" in r.emitted) for r in passes]
        assert all(r.num_tokens <= profile.batch_tokens for r in passes)
        assert ids.count("long") == 1
    ollama = emitted_in_prompt_passes["ollama"]
    assert len(ollama) >= 2 and not all(ollama) and any(ollama)
    assert emitted_in_prompt_passes["llamacpp"] == [True]  # one pass: prompt and decode


def test_a_request_takes_the_slot_holding_its_prefix_and_computes_only_the_rest() -> None:
    engine = slots(seqs=2)
    shared = list(range(320))
    engine.add(SimRequest("a", [*shared, *range(5000, 5100)], max_tokens=2, ignore_eos=True), 0.0)
    run(engine)
    engine.add(SimRequest("c", [*shared, *range(7000, 7100)], max_tokens=2, ignore_eos=True), 0.0)
    engine.add(SimRequest("b", [*range(9000, 9100)], max_tokens=2, ignore_eos=True), 0.0)
    first = engine.step(0.0)
    # c found a's slot (20 shared blocks): only its last 100 tokens and b's 100 are computed.
    assert first.num_tokens == 100 + 100 and set(first.first_token) == {"b", "c"}
    stats = engine.stats()
    assert stats.prefix_hits == 320 and stats.prefix_queries == 420 + 420 + 100
    run(engine)
    # Ties go to the first free slot, as Ollama's findLongestCacheSlot: a request sharing
    # nothing takes c's slot first, so the next one sharing c's prefix finds it gone.
    engine.add(SimRequest("d", [*range(8000, 8100)], max_tokens=2, ignore_eos=True), 0.0)
    engine.add(SimRequest("e", [*shared, *range(6000, 6100)], max_tokens=2, ignore_eos=True), 0.0)
    run(engine)
    assert engine.stats().prefix_hits == 320


def test_slots_that_do_not_fit_in_memory_are_refused_at_start() -> None:
    qwen = load_profile("qwen3-32b-q8_0-gb10-ollama")
    with pytest.raises(ValueError, match=r"64 slots of 32768 tokens need .* GiB"):
        make_engine(qwen, EngineConfig(max_num_seqs=64, num_blocks=64 * 32768 // 16))
    with pytest.raises(ValueError, match="no elastic KV pool"):
        make_engine(qwen, EngineConfig(kv_mode="elastic"), SharedKVPool("p", 100))
    engine = make_engine(qwen, EngineConfig(max_num_seqs=8, num_blocks=8 * 8192 // 16))
    assert isinstance(engine, SlotEngine) and engine.context == 8192


def test_a_slot_decodes_at_the_profiles_roofline() -> None:
    engine = slots(seqs=1)
    engine.add(request("a", 100, max_tokens=3), 0.0)
    results = run(engine)
    # A decode pass reads the weights and the slot's context, like a vLLM step.
    assert results[1].duration == pytest.approx(OLLAMA.step_time(1, 101, 101, 1))


async def test_vllm_sim_serves_an_ollama_profile_as_ollama() -> None:
    config = ReplicaConfig(
        model="qwen2.5:7b-instruct-fp16",
        profile="qwen2.5-7b-fp16-gb10-ollama",
        present_as="ollama",
        max_num_seqs=2,
        kv_blocks=2 * 512,
        time_scale=0.0,
    )
    app = create_app(config)
    await app.startup()
    try:
        assert isinstance(app.running.engine, SlotEngine)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
            body = {
                "model": "qwen2.5:7b-instruct-fp16",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 4,
            }
            answer = await client.post("/v1/chat/completions", json=body)
            assert answer.status_code == 200, answer.text
            assert answer.json()["usage"]["completion_tokens"] == 4
            assert (await client.get("/")).text == "Ollama is running"
    finally:
        await app.shutdown()
