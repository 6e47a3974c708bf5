import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest

from gateway.health import HealthChecker, parse_models, parse_tags
from gateway.kinds import KINDS
from gateway.upstream import Upstream
from routers.pool import ReplicaPool
from turnout.logs import configure_logging

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def models_body(*models: tuple[str, int]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "owned_by": "vllm", "max_model_len": length}
            for name, length in models
        ],
    }


class FakeReplicas:
    """Answers /health and /v1/models per host; `status` and `hang` change at will."""

    def __init__(self) -> None:
        self.status: dict[str, int] = {}
        self.hang: set[str] = set()
        self.refuse: set[str] = set()
        self.models: dict[str, dict[str, Any]] = {}
        self.calls: Counter[tuple[str, str]] = Counter()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        host, path = request.url.host, request.url.path
        self.calls[host, path] += 1
        if host in self.refuse:
            raise httpx.ConnectError("connection refused", request=request)
        if host in self.hang:
            await asyncio.Event().wait()
        if path == "/health":
            return httpx.Response(self.status.get(host, 200))
        if path == "/v1/models":
            return httpx.Response(200, json=self.models.get(host, models_body(("m", 4096))))
        return httpx.Response(404)


def make_pool(*names: str, clock: Clock | None = None) -> ReplicaPool:
    return ReplicaPool((Upstream(id=n, url=f"http://{n}") for n in names), clock=clock or Clock())


def events(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    lines = capsys.readouterr().err.strip().splitlines()
    return [orjson.loads(line) for line in lines if line.startswith("{")]


async def test_refresh_all_learns_models_and_max_model_len() -> None:
    fake = FakeReplicas()
    fake.models["a"] = models_body(("meta-llama/Llama-3.1-8B-Instruct", 131072))
    fake.models["b"] = models_body(("Qwen/Qwen2.5-7B-Instruct", 32768), ("lora-x", 32768))
    pool = make_pool("a", "b")
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as http:
        await HealthChecker(pool, http, interval=1.0, timeout=0.5).refresh_all()
    assert pool.get("a").models == ("meta-llama/Llama-3.1-8B-Instruct",)
    assert pool.get("a").max_model_len == {"meta-llama/Llama-3.1-8B-Instruct": 131072}
    assert pool.get("b").models == ("Qwen/Qwen2.5-7B-Instruct", "lora-x")
    assert pool.served_models() == [
        "Qwen/Qwen2.5-7B-Instruct",
        "lora-x",
        "meta-llama/Llama-3.1-8B-Instruct",
    ]


async def test_refresh_all_is_bounded_by_the_timeout_when_a_replica_hangs() -> None:
    fake = FakeReplicas()
    fake.hang.add("hung")
    pool = make_pool("ok", "hung")
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as http:
        checker = HealthChecker(pool, http, interval=1.0, timeout=0.1)
        await asyncio.wait_for(checker.refresh_all(), 1.0)
    assert pool.get("ok").models == ("m",)
    assert not pool.get("hung").healthy
    assert pool.get("hung").last_error == "timeout"


async def test_pinned_models_are_kept_but_max_model_len_is_learned() -> None:
    fake = FakeReplicas()
    fake.models["a"] = models_body(("served-name", 8192))
    pool = ReplicaPool([Upstream(id="a", url="http://a", models=("alias",), models_pinned=True)])
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as http:
        await HealthChecker(pool, http, interval=1.0).refresh_all()
    assert pool.get("a").models == ("alias",)
    assert pool.get("a").max_model_len == {"served-name": 8192}


@pytest.mark.parametrize("fault", ["503", "refused", "hang"])
async def test_failing_replica_is_ejected_with_backoff_and_restored(
    fault: str, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("info", json=True)
    fake = FakeReplicas()
    if fault == "503":
        fake.status["a"] = 503
    elif fault == "refused":
        fake.refuse.add("a")
    else:
        fake.hang.add("a")
    clock = Clock()
    pool = make_pool("a", clock=clock)
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as http:
        checker = HealthChecker(pool, http, interval=1.0, timeout=0.05)
        assert await checker.check_once("a") is False
        assert not pool.get("a").healthy
        checks = fake.calls["a", "/health"]

        # Within the backoff no request is sent at all.
        clock.now += 0.5
        assert await checker.check_once("a") is False
        assert fake.calls["a", "/health"] == checks

        # Backoff over, still failing: ejected again, for twice as long.
        clock.now += 0.6
        assert await checker.check_once("a") is False
        assert fake.calls["a", "/health"] == checks + 1
        assert pool.get("a").retry_at == pytest.approx(clock.now + 2.0)

        # It recovers: back at the next check after the backoff, models refreshed.
        fake.status.clear()
        fake.refuse.clear()
        fake.hang.clear()
        clock.now += 2.0
        assert await checker.check_once("a") is True
    assert pool.get("a").healthy and pool.get("a").models == ("m",)
    logged = [(e["event"], e.get("replica")) for e in events(capsys) if "replica" in e]
    assert ("replica_ejected", "a") in logged
    assert ("replica_restored", "a") in logged
    # One ejection event, however many failed checks while it was out.
    assert [name for name, _ in logged].count("replica_ejected") == 1


async def test_run_restores_a_passively_ejected_replica_promptly() -> None:
    fake = FakeReplicas()
    pool = ReplicaPool([Upstream(id="a", url="http://a")], backoff_base=0.1)
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as http:
        task = asyncio.create_task(HealthChecker(pool, http, interval=0.2, timeout=0.1).run())
        await asyncio.sleep(0.05)
        pool.mark_down("a", "connect error")  # what the proxy does on a refused connection
        for _ in range(120):  # back in ~0.35 s; up to 3 s on a loaded machine
            await asyncio.sleep(0.025)
            if pool.get("a").healthy:
                break
        healthy = pool.get("a").healthy
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert healthy


async def test_models_refresh_failure_keeps_what_was_known() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            return httpx.Response(200)
        return httpx.Response(200, text="not json")

    pool = ReplicaPool([Upstream(id="a", url="http://a", models=("m",))])
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        assert await HealthChecker(pool, http, interval=1.0).check_once("a") is True
    assert pool.get("a").models == ("m",) and pool.get("a").healthy


def test_parse_models_skips_malformed_entries() -> None:
    body = {
        "data": [
            {"id": "a", "max_model_len": 2048},
            {"id": "b", "max_model_len": "big"},
            {"id": "c", "max_model_len": True},
            {"no_id": 1},
            "junk",
        ]
    }
    assert parse_models(body) == (["a", "b", "c"], {"a": 2048})
    with pytest.raises(ValueError, match="model list"):
        parse_models({"models": []})


async def test_a_replica_without_health_endpoint_is_judged_by_its_model_list() -> None:
    # Ollama's OpenAI API has no /health; /v1/models answering means it is up.
    answers = {"/health": httpx.Response(404, text="404 page not found")}
    calls: Counter[str] = Counter()

    async def handler(request: httpx.Request) -> httpx.Response:
        calls[request.url.path] += 1
        if request.url.path in answers:
            return answers[request.url.path]
        return httpx.Response(200, json=models_body(("llama3.2", 8192)))

    pool = make_pool("ollama")
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        checker = HealthChecker(pool, http, interval=1.0)
        assert await checker.check_once("ollama") is True
        assert pool.get("ollama").models == ("llama3.2",)
        assert calls["/v1/models"] == 1  # the probe's answer is reused for the models
        answers["/v1/models"] = httpx.Response(502)
        assert await checker.check_once("ollama") is False
    assert not pool.get("ollama").healthy
    assert pool.get("ollama").last_error == "/v1/models answered HTTP 502"


def kind_replica(name: str, kind: str, **fields: Any) -> Upstream:
    replica = Upstream(id=name, url=f"http://{name}", kind_verified=True, **fields)
    replica.set_kind(KINDS[kind])
    return replica


async def test_sglang_health_is_given_the_second_its_generation_takes() -> None:
    # SGLang's /health runs a one-token generation; the usual timeout would eject it.
    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            await asyncio.sleep(0.3)
            return httpx.Response(200)
        return httpx.Response(200, json=models_body(("m", 4096)))

    pool = ReplicaPool([kind_replica("s", "sglang"), kind_replica("v", "vllm")])
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        checker = HealthChecker(pool, http, interval=0.2, timeout=0.1)
        assert await checker.check_once("s") is True
        assert await checker.check_once("v") is False
    assert pool.get("v").last_error == "timeout"


async def test_each_kind_is_probed_where_it_answers() -> None:
    calls: Counter[tuple[str, str]] = Counter()
    tags = {"models": [{"name": "llama3.1:8b"}]}

    async def handler(request: httpx.Request) -> httpx.Response:
        host, path = request.url.host, request.url.path
        calls[host, path] += 1
        pages = {
            ("ollama", "/"): httpx.Response(200, text="Ollama is running"),
            ("ollama", "/api/tags"): httpx.Response(200, json=tags),
            ("lcp", "/openapi.json"): httpx.Response(200, json={"info": {}}),
            ("lcp", "/v1/models"): httpx.Response(200, json=models_body(("gguf", 2048))),
            ("api", "/v1/models"): httpx.Response(200, json=models_body(("gpt", 8192))),
        }
        return pages.get((host, path), httpx.Response(404, text="404 page not found"))

    pool = ReplicaPool(
        [
            kind_replica("ollama", "ollama", aliases={"llama": "llama3.1:8b"}),
            kind_replica("lcp", "llama-cpp-python"),
            kind_replica("api", "openai"),
        ]
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        checker = HealthChecker(pool, http, interval=1.0)
        await checker.refresh_all()
        assert [r.healthy for r in pool] == [True, True, True]
        assert pool.get("ollama").models == ("llama",)
        assert pool.get("lcp").models == ("gguf",) and pool.get("api").models == ("gpt",)
        # llama-cpp-python's listing takes its generation lock: not read while busy.
        pool.acquire("lcp")
        assert await checker.check_once("lcp") is True
    assert calls["lcp", "/openapi.json"] == 2 and calls["lcp", "/v1/models"] == 1
    assert calls["api", "/v1/models"] == 1  # the probe's answer is the listing
    assert not any(path == "/health" for _, path in calls)


async def test_a_kind_is_detected_once_and_a_wrong_one_keeps_the_replica_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", json=True)
    fake = FakeReplicas()  # vLLM-like, minus /version: a generic OpenAI server

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/version":
            return httpx.Response(200, json={"version": "0.32.0"})
        return await fake(request)

    wrong = Upstream(id="b", url="http://b")
    wrong.set_kind(KINDS["sglang"])
    pool = ReplicaPool([Upstream(id="a", url="http://a"), wrong])
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        checker = HealthChecker(pool, http, interval=1.0)
        await checker.refresh_all()
        assert await checker.check_once("a") is True
    a, b = pool.get("a"), pool.get("b")
    assert a.kind is not None and a.kind.name == "vllm" and a.kind_verified
    assert a.healthy and not b.healthy
    assert b.last_error.startswith("kind is 'sglang' but the server answers like 'vllm'")
    logged = [e for e in events(capsys) if e["event"] == "replica_kind_mismatch"]
    assert [e["replica"] for e in logged] == ["b"]


def test_ollama_lists_null_when_no_model_is_pulled() -> None:
    assert parse_models({"object": "list", "data": None}) == ([], {})
    assert parse_tags({"models": [{"name": "qwen3:32b"}, {"size": 1}]}) == ["qwen3:32b"]
    assert parse_tags({"models": None}) == []
    with pytest.raises(ValueError, match="Ollama model list"):
        parse_tags({"data": []})
