"""Kind detection against what each server answers: the simulator's faces (which follow
each engine's source, loadtest/sim/faces.py), served in process, and hand-written answers
for the cases in between (a proxy that passes owned_by through, Ollama with no model)."""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from gateway.kinds import KINDS, Detection, detect, mismatch
from loadtest.sim.replica import ReplicaConfig
from loadtest.sim.server import create_app


@asynccontextmanager
async def face(present_as: str, **config: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ReplicaConfig(model="m", profile="tiny", present_as=present_as, **config))
    await app.startup()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
            yield client
    finally:
        await app.shutdown()


@pytest.mark.parametrize(
    ("present_as", "kind"),
    [
        ("vllm", "vllm"),
        ("sglang", "sglang"),
        ("llamacpp", "llamacpp"),
        ("llama-cpp-python", "llama-cpp-python"),
        ("ollama", "ollama"),
    ],
)
async def test_each_server_is_recognised_by_its_answers(present_as: str, kind: str) -> None:
    async with face(present_as) as client:
        paths: list[str] = []

        async def get(path: str) -> httpx.Response:
            paths.append(path)
            return await client.get(path)

        found = await detect(get)
    assert found is not None and found.kind == kind
    # Detection never asks SGLang's /health (a generation of its own, a second or more).
    assert "/health" not in paths


def answers(table: dict[str, httpx.Response]) -> Callable[[str], Any]:
    async def get(path: str) -> httpx.Response:
        if path not in table:
            return httpx.Response(404, json={"detail": "Not Found"})
        return table[path]

    return get


def listing(owned_by: str | None) -> httpx.Response:
    card: dict[str, Any] = {"id": "m", "object": "model"}
    if owned_by is not None:
        card["owned_by"] = owned_by
    return httpx.Response(200, json={"object": "list", "data": [card]})


async def test_owned_by_alone_is_not_enough() -> None:
    # A proxy passing vLLM's model list through, without vLLM's /version: generic OpenAI.
    found = await detect(answers({"/v1/models": listing("vllm")}))
    assert found is not None and found.kind == "openai"
    assert "owned_by 'vllm'" in found.evidence


async def test_ollama_without_models_is_ollama() -> None:
    found = await detect(
        answers(
            {
                "/v1/models": httpx.Response(200, json={"object": "list", "data": None}),
                "/api/version": httpx.Response(200, json={"version": "0.20.3"}),
                "/": httpx.Response(200, text="Ollama is running"),
            }
        )
    )
    assert found == Detection("ollama", "/ answers 'Ollama is running' and /api/version answers")


async def test_an_api_version_alone_is_not_ollama() -> None:
    found = await detect(
        answers(
            {
                "/v1/models": listing("acme"),
                "/api/version": httpx.Response(200, json={"version": "1"}),
            }
        )
    )
    assert found is not None and found.kind == "openai"


async def test_nothing_to_tell_from() -> None:
    async def refused(path: str) -> httpx.Response:
        raise httpx.ConnectError("refused")

    assert await detect(refused) is None
    # Up, but still loading (llama-server answers 503 everywhere then).
    loading = httpx.Response(503, json={"error": {"code": 503, "message": "Loading model"}})
    assert await detect(answers({"/v1/models": loading})) is None


def test_openai_fits_any_server_and_other_kinds_only_themselves() -> None:
    sglang = Detection("sglang", "evidence")
    assert mismatch(KINDS["openai"], sglang) is None
    assert mismatch(KINDS["sglang"], sglang) is None
    problem = mismatch(KINDS["vllm"], sglang)
    assert problem == "kind is 'vllm' but the server answers like 'sglang' (evidence)"
