"""The gateway in front of real `vllm-sim serve --profile tiny` replicas, the openai SDK
as the client: rotation, failover, retries, disconnects, models, strategy switching."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.gateway.conftest import SDK, admin_replicas, replicas_file, wait_until
from tests.loadtest.sim.serving import MODEL, gauge, serve_argv
from tests.procs import Proc

MESSAGES: Any = [{"role": "user", "content": "Tell me about turnouts."}]


def sims(spawn: Callable[..., Proc], n: int, *flags: str, model: str = MODEL) -> list[Proc]:
    return [spawn(serve_argv("--seed", str(i), *flags, model=model)) for i in range(n)]


def gateway_over(
    gateway: Callable[..., Proc], tmp_path: Path, replicas: list[Proc], **settings: Any
) -> Proc:
    entries = [{"url": r.url, "name": f"sim{i}"} for i, r in enumerate(replicas)]
    return gateway(replicas_file=replicas_file(tmp_path, entries), **settings)


def served_by(client: openai.OpenAI, **extra: Any) -> str:
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=MESSAGES, max_tokens=4, **extra
    )
    assert raw.parse().choices[0].message.content
    return raw.headers["x-turnout-replica"]


def running(replica: Proc) -> float:
    return gauge(replica.url, "vllm:num_requests_running")


def gateway_in_flight(gw: Proc) -> int:
    return sum(r["in_flight"] for r in admin_replicas(gw)["replicas"])


def test_rotation_streaming_and_models(
    spawn: Callable[..., Proc], gateway: Callable[..., Proc], tmp_path: Path, sdk: SDK
) -> None:
    replicas = sims(spawn, 3)
    gw = gateway_over(gateway, tmp_path, replicas, strategy="round_robin")
    client = sdk(gw)
    assert [served_by(client) for _ in range(6)] == ["sim0", "sim1", "sim2"] * 2

    stream = client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8

    models = client.models.list().data
    assert [m.id for m in models] == [MODEL]
    assert models[0].model_extra is not None
    assert models[0].model_extra["max_model_len"] == 4096


def test_dead_replica_fails_over_then_is_ejected(
    spawn: Callable[..., Proc], gateway: Callable[..., Proc], tmp_path: Path, sdk: SDK
) -> None:
    replicas = sims(spawn, 2)
    gw = gateway_over(gateway, tmp_path, replicas, strategy="round_robin")
    client = sdk(gw)
    assert [served_by(client) for _ in range(2)] == ["sim0", "sim1"]
    replicas[1].stop()
    assert [served_by(client) for _ in range(4)] == ["sim0"] * 4
    healthy = {r["name"]: r["healthy"] for r in admin_replicas(gw)["replicas"]}
    assert healthy == {"sim0": True, "sim1": False}
    assert httpx.get(gw.url + "/health", timeout=5).status_code == 200


def test_rate_limited_replica_is_retried_elsewhere_and_500_is_not(
    spawn: Callable[..., Proc], gateway: Callable[..., Proc], tmp_path: Path, sdk: SDK
) -> None:
    replicas = sims(spawn, 2)
    gw = gateway_over(gateway, tmp_path, replicas, strategy="round_robin")
    client = sdk(gw)
    httpx.post(replicas[0].url + "/sim/faults", json={"rate_limit_rate": 1.0}, timeout=5)
    assert [served_by(client) for _ in range(4)] == ["sim1"] * 4
    metrics = httpx.get(gw.url + "/metrics", timeout=5).text
    # Every request's turn lands on sim0 (the retry takes the odd turns): four retries.
    assert f'turnout_retries_total{{model="{MODEL}"}} 4.0' in metrics

    httpx.post(replicas[0].url + "/sim/faults", json={"reset": True, "error_rate": 1.0}, timeout=5)
    with pytest.raises(openai.InternalServerError) as caught:
        for _ in range(2):  # one of the two goes to sim0, whose 500 is relayed as is
            served_by(client)
    assert caught.value.status_code == 500
    assert caught.value.response.headers["x-turnout-replica"] == "sim0"


def test_dropped_connection_is_retried_elsewhere(
    spawn: Callable[..., Proc], gateway: Callable[..., Proc], tmp_path: Path, sdk: SDK
) -> None:
    replicas = sims(spawn, 2)
    gw = gateway_over(gateway, tmp_path, replicas, strategy="round_robin")
    httpx.post(replicas[0].url + "/sim/faults", json={"drop_rate": 1.0}, timeout=5)
    assert [served_by(sdk(gw)) for _ in range(2)] == ["sim1", "sim1"]
    metrics = httpx.get(gw.url + "/metrics", timeout=5).text
    assert 'turnout_upstream_errors_total{kind="disconnected",replica="sim0"}' in metrics


def test_no_healthy_replica_is_503_with_retry_after(
    spawn: Callable[..., Proc], gateway: Callable[..., Proc], tmp_path: Path, sdk: SDK
) -> None:
    replicas = sims(spawn, 1)
    gw = gateway_over(gateway, tmp_path, replicas, health_interval=0.2)
    httpx.post(replicas[0].url + "/sim/faults", json={"health_fail": True}, timeout=5)
    wait_until(lambda: httpx.get(gw.url + "/health", timeout=5).status_code == 503, 5)
    with pytest.raises(openai.APIStatusError) as caught:
        served_by(sdk(gw))
    assert caught.value.status_code == 503
    assert int(caught.value.response.headers["retry-after"]) >= 1
    httpx.post(replicas[0].url + "/sim/faults", json={"reset": True}, timeout=5)
    wait_until(lambda: httpx.get(gw.url + "/health", timeout=5).status_code == 200, 10)
    assert served_by(sdk(gw)) == "sim0"


@pytest.mark.parametrize(
    ("phase", "faults", "stream", "chunks_read"),
    [
        ("non-streaming in progress", {"step_multiplier": 2000.0}, False, 0),
        ("waiting for the first token", {"stall_after": 0}, True, 0),
        ("mid-stream", {"stall_after": 3}, True, 2),
    ],
)
def test_client_disconnect_stops_the_replica(
    phase: str,
    faults: dict[str, Any],
    stream: bool,
    chunks_read: int,
    spawn: Callable[..., Proc],
    gateway: Callable[..., Proc],
    tmp_path: Path,
    sdk: SDK,
) -> None:
    replicas = sims(spawn, 1)
    gw = gateway_over(gateway, tmp_path, replicas)
    httpx.post(replicas[0].url + "/sim/faults", json=faults, timeout=5)
    client = sdk(gw, timeout=1.5)
    request: Any = {"model": MODEL, "messages": MESSAGES, "max_tokens": 200}
    request["extra_body"] = {"ignore_eos": True}
    if not stream:
        with pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(**request)
    elif chunks_read == 0:
        with pytest.raises(openai.APITimeoutError):
            for chunk in client.chat.completions.create(**request, stream=True):
                assert not (chunk.choices and chunk.choices[0].delta.content)
    else:
        events = client.chat.completions.create(**request, stream=True)
        contents = (c for c in events if c.choices and c.choices[0].delta.content)
        for _ in range(chunks_read):
            next(contents)
        assert running(replicas[0]) == 1
        events.close()
    wait_until(lambda: running(replicas[0]) == 0, 5, f"replica stopped working ({phase})")
    wait_until(lambda: gateway_in_flight(gw) == 0, 5, f"gateway in-flight is 0 ({phase})")


def test_strategy_switch_at_run_time(
    spawn: Callable[..., Proc], gateway: Callable[..., Proc], tmp_path: Path, sdk: SDK
) -> None:
    replicas = sims(spawn, 2)
    gw = gateway_over(gateway, tmp_path, replicas, strategy="round_robin")
    assert admin_replicas(gw)["strategy"] == "round_robin"
    bad = httpx.put(gw.url + "/admin/strategy", json={"strategy": "fastest"}, timeout=5)
    assert bad.status_code == 400
    assert "available: " in bad.json()["error"]["message"]
    assert "queue_depth, round_robin" in bad.json()["error"]["message"]
    tuned = {"strategy": "p2c", "options": {"choices": 3, "load": "work"}}
    assert httpx.put(gw.url + "/admin/strategy", json=tuned, timeout=5).json() == {
        "strategy": "p2c"
    }
    ok = httpx.put(gw.url + "/admin/strategy", json={"strategy": "queue_depth"}, timeout=5)
    assert ok.json() == {"strategy": "queue_depth"}
    served_by(sdk(gw))
    state = admin_replicas(gw)
    assert state["strategy"] == "queue_depth"
    assert set(state["replicas"][0]) == {
        "name", "url", "kind", "kind_verified", "aliases", "models", "healthy", "state",
        "source", "in_flight", "waiting", "running", "kv_usage", "metrics_age_s", "metrics_stale",
    }  # fmt: skip
    assert (state["replicas"][0]["state"], state["replicas"][0]["source"]) == ("active", "config")
    assert state["replicas"][0]["kind"] == "vllm" and state["replicas"][0]["kind_verified"]
    metrics = httpx.get(gw.url + "/metrics", timeout=5).text
    assert 'strategy="queue_depth"' in metrics
