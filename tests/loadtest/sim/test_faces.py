"""The simulator presenting itself as SGLang, llama-server, llama-cpp-python and Ollama: each
answers what that server answers (loadtest/sim/faces.py cites the upstream sources), in
process, through the app's ASGI interface."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadtest.sim.replica import ReplicaConfig
from loadtest.sim.server import create_app
from loadtest.sim.types import natural_stop_length

CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@asynccontextmanager
async def served(
    present_as: str, model: str = "m", **config: Any
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ReplicaConfig(model=model, profile="tiny", present_as=present_as, **config))
    await app.startup()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
            yield client
    finally:
        await app.shutdown()


def events(text: str) -> list[Any]:
    """The data of each SSE event, JSON-decoded ("[DONE]" kept as is)."""
    out: list[Any] = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: ") :]
            out.append(data if data == "[DONE]" else orjson.loads(data))
    return out


def samples(text: str) -> dict[str, tuple[dict[str, str], float]]:
    return {
        s.name: (s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_sglang() -> None:
    async with served("sglang", "qwen/qwen2.5-0.5b-instruct") as sim:
        health = await sim.get("/health")
        assert (health.status_code, health.content) == (200, b"")
        assert (await sim.get("/health_generate")).status_code == 200
        assert (await sim.get("/ping")).content == b""
        for path in ("/get_model_info", "/model_info"):
            info = (await sim.get(path)).json()
            assert info["model_path"] == "qwen/qwen2.5-0.5b-instruct" and info["is_generation"]
        server = (await sim.get("/get_server_info")).json()
        assert server["dp_size"] == 1 and server["status"] == "ready"
        assert server["context_length"] is None and server["max_req_input_len"] > 0
        assert len(server["internal_states"]) == 1 and "version" in server
        assert (await sim.get("/get_load")).json()[0].keys() >= {"dp_rank", "num_reqs"}
        (card,) = (await sim.get("/v1/models")).json()["data"]
        assert card["owned_by"] == "sglang" and card["max_model_len"] == 4096
        assert card["root"] == card["id"]
        # The model field is not checked: any name is served, and echoed.
        reply = await sim.post("/v1/chat/completions", json={**CHAT, "model": "DeepSeek-XXX"})
        assert reply.status_code == 200 and reply.json()["model"] == "DeepSeek-XXX"
        # Metrics are off unless asked for (--enable-metrics upstream): FastAPI's 404.
        off = await sim.get("/metrics")
        assert (off.status_code, off.json()) == (404, {"detail": "Not Found"})
        assert (await sim.get("/version")).status_code == 404
        bad = await sim.post("/v1/chat/completions", content=b"{", headers=JSON)
        assert bad.status_code == 400
        assert bad.json().keys() == {"object", "message", "type", "param", "code"}


JSON = {"content-type": "application/json"}


async def test_sglang_metrics_and_slow_health() -> None:
    async with served("sglang", metrics=True, health_delay=0.2) as sim:
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert (await sim.get("/health")).status_code == 200
        assert loop.time() - started >= 0.2
        await sim.post("/v1/chat/completions", json={**CHAT, "model": "m"})
        found = samples((await sim.get("/metrics")).text)
    labels, _ = found["sglang:num_queue_reqs"]
    assert labels == {"engine_type": "unified", "model_name": "m", "pp_rank": "0", "tp_rank": "0"}
    assert {"sglang:num_running_reqs", "sglang:token_usage"} <= found.keys()
    assert found["sglang:generation_tokens_total"][1] == 4
    assert found["sglang:prompt_tokens_total"][1] > 0
    assert "sglang:cached_tokens_total" in found


async def test_llama_server() -> None:
    path = "/models/Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf"
    async with served("llamacpp", path) as sim:
        assert (await sim.get("/health")).json() == {"status": "ok"}
        listing = (await sim.get("/v1/models")).json()
        assert listing["data"][0]["owned_by"] == "llamacpp" and "meta" in listing["data"][0]
        # The Ollama-style array beside OpenAI's list: no proof of Ollama.
        assert listing["models"][0]["name"] == path
        assert (await sim.get("/models")).json() == listing
        props = (await sim.get("/props")).json()
        assert props["total_slots"] == 256 and "build_info" in props
        assert len((await sim.get("/slots")).json()) == 256
        off = await sim.get("/metrics")
        assert off.status_code == 501 and off.json()["error"]["type"] == "not_supported_error"
        reply = await sim.post("/v1/chat/completions", json={**CHAT, "model": "anything"})
        assert reply.json()["model"] == "anything"
        missing = await sim.get("/version")
        assert missing.json() == {
            "error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}
        }
        await sim.post("/sim/faults", json={"health_fail": True})
        loading = await sim.get("/health")
        assert loading.status_code == 503
        assert loading.json()["error"] == {
            "code": 503,
            "message": "Loading model",
            "type": "unavailable_error",
        }


async def test_llama_server_metrics_have_no_labels_and_no_kv_gauge() -> None:
    async with served("llamacpp", metrics=True) as sim:
        await sim.post("/v1/completions", json={"model": "m", "prompt": "hello", "max_tokens": 3})
        text = (await sim.get("/metrics")).text
    names = [line.split()[0] for line in text.splitlines() if not line.startswith("#")]
    assert len(names) == 11 and all("{" not in name for name in names)  # no labels
    assert {"llamacpp:requests_deferred", "llamacpp:n_tokens_max"} <= set(names)
    assert not any("kv_cache" in name for name in names)
    assert samples(text)["llamacpp:tokens_predicted_total"][1] == 3


async def test_llama_cpp_python() -> None:
    async with served("llama-cpp-python", "/models/llama.gguf") as sim:
        for path in ("/health", "/metrics", "/ping", "/version", "/props"):
            answer = await sim.get(path)
            assert (answer.status_code, answer.json()) == (404, {"detail": "Not Found"}), path
        assert (await sim.get("/openapi.json")).json()["info"]["title"] == "🦙 llama.cpp Python API"
        assert (await sim.get("/v1/models")).json() == {
            "object": "list",
            "data": [
                {"id": "/models/llama.gguf", "object": "model", "owned_by": "me", "permissions": []}
            ],
        }
        # An unknown model silently gets the default one.
        reply = await sim.post("/v1/chat/completions", json={**CHAT, "model": "gpt-4"})
        assert reply.status_code == 200 and reply.json()["model"] == "/models/llama.gguf"
        stream = await sim.post(
            "/v1/chat/completions",
            json={**CHAT, "model": "x", "stream": True, "stream_options": {"include_usage": True}},
        )
        assert not any(isinstance(e, dict) and e.get("usage") for e in events(stream.text))


async def test_llama_cpp_python_listing_interrupts_a_stream() -> None:
    # A request waiting for the model (a /v1/models call too) ends the stream in progress.
    async with served("llama-cpp-python", time_scale=20.0) as sim:
        body = {**CHAT, "model": "m", "max_tokens": 400, "stream": True, "ignore_eos": True}
        stream = asyncio.create_task(sim.post("/v1/chat/completions", json=body))
        await asyncio.sleep(0.3)
        assert not stream.done()
        await sim.get("/v1/models")
        text = (await asyncio.wait_for(stream, 10)).text
    got = events(text)
    assert got[-1] == "[DONE]"
    reasons = [c["choices"][0]["finish_reason"] for c in got[:-1] if c["choices"]]
    assert 0 < len(reasons) < 400 and set(reasons) == {None}  # cut, not finished


async def test_llama_cpp_python_serves_one_request_at_a_time() -> None:
    async with served("llama-cpp-python", time_scale=20.0, interrupt_requests=False) as sim:
        body = {**CHAT, "model": "m", "max_tokens": 30, "ignore_eos": True}
        first = asyncio.create_task(sim.post("/v1/chat/completions", json=body))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(sim.post("/v1/chat/completions", json=body))
        done, _ = await asyncio.wait({first, second}, return_when=asyncio.FIRST_COMPLETED)
        assert done == {first}
        replies = [(await task).json() for task in (first, second)]
    assert [r["usage"]["completion_tokens"] for r in replies] == [30, 30]


async def test_ollama() -> None:
    async with served("ollama", "qwen3:32b-q8_0") as sim:
        root = await sim.get("/")
        assert (root.status_code, root.text) == (200, "Ollama is running")
        assert (await sim.head("/")).status_code == 200
        assert "version" in (await sim.get("/api/version")).json()
        (tag,) = (await sim.get("/api/tags")).json()["models"]
        assert tag["name"] == "qwen3:32b-q8_0" and tag["details"]["format"] == "gguf"
        (loaded,) = (await sim.get("/api/ps")).json()["models"]
        assert loaded.keys() >= {"size_vram", "expires_at"}
        (card,) = (await sim.get("/v1/models")).json()["data"]
        assert (card["id"], card["owned_by"]) == ("qwen3:32b-q8_0", "library")
        for path in ("/health", "/metrics"):
            missing = await sim.get(path)
            assert (missing.status_code, missing.text) == (404, "404 page not found")
        unknown = await sim.post("/v1/chat/completions", json={**CHAT, "model": "llama3"})
        assert unknown.status_code == 404
        assert unknown.json()["error"] == {
            "message": "model 'llama3' not found",
            "type": "not_found_error",
            "param": None,
            "code": None,
        }
        plain = (
            await sim.post("/v1/chat/completions", json={**CHAT, "model": "qwen3:32b-q8_0"})
        ).json()
        assert plain["system_fingerprint"] == "fp_ollama" and "usage" in plain
        body = {**CHAT, "model": "qwen3:32b-q8_0", "stream": True}
        chunks = events((await sim.post("/v1/chat/completions", json=body)).text)
        with_usage = events(
            (
                await sim.post(
                    "/v1/chat/completions",
                    json={**body, "stream_options": {"include_usage": True}},
                )
            ).text
        )
    assert chunks[-1] == "[DONE]"
    for chunk in chunks[:-1]:
        assert chunk["choices"][0]["delta"]["role"] == "assistant"
        assert chunk["system_fingerprint"] == "fp_ollama"
        assert 0 <= int(chunk["id"].removeprefix("chatcmpl-")) < 999
    assert not any(c.get("usage") for c in chunks[:-1])
    assert with_usage[-2]["choices"] == [] and with_usage[-2]["usage"]["completion_tokens"] == 4


async def test_ollama_ignores_ignore_eos() -> None:
    seed = next(s for s in range(1000) if natural_stop_length(s) < 40)
    body = {**CHAT, "model": "m", "max_tokens": 60, "ignore_eos": True, "seed": seed}
    lengths = {}
    for face in ("vllm", "ollama"):
        async with served(face, time_scale=0.0) as sim:
            reply = (await sim.post("/v1/chat/completions", json=body)).json()
            lengths[face] = reply["usage"]["completion_tokens"]
    assert lengths == {"vllm": 60, "ollama": natural_stop_length(seed)}


async def test_ollama_says_busy_beyond_parallel_plus_queue() -> None:
    # One slot (OLLAMA_NUM_PARALLEL=1) and a queue of one: the third request is refused.
    seed = next(s for s in range(1000) if natural_stop_length(s) > 100)
    async with served("ollama", max_num_seqs=1, max_queue=1, time_scale=20.0) as sim:
        body = {**CHAT, "model": "m", "max_tokens": 200, "seed": seed}
        first = [asyncio.create_task(sim.post("/v1/chat/completions", json=body)) for _ in "ab"]
        await asyncio.sleep(0.1)
        third = await sim.post("/v1/chat/completions", json=body)
        assert [(await task).status_code for task in first] == [200, 200]
    assert third.status_code == 503
    assert third.json()["error"]["message"] == (
        "server busy, please try again.  maximum pending requests exceeded"
    )


@pytest.mark.parametrize("face", ["sglang", "llamacpp", "llama-cpp-python", "ollama"])
async def test_every_face_streams_the_whole_answer(face: str) -> None:
    async with served(face) as sim:
        body = {**CHAT, "model": "m", "stream": True, "max_tokens": 5, "ignore_eos": True}
        got = events((await sim.post("/v1/chat/completions", json=body)).text)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in got[:-1] if c["choices"])
    assert got[-1] == "[DONE]" and text
    assert got[-2]["choices"][0]["finish_reason"] in ("length", "stop")
