"""The relay end to end: fake replicas and a gateway as real processes, the openai SDK
as the client."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.gateway.conftest import SDK, Fake, admin_replicas, replicas_file, wait_until
from tests.procs import Proc, free_port

MESSAGES: Any = [{"role": "user", "content": "hello"}]


def served_by(client: openai.OpenAI, model: str = "m1") -> str:
    raw = client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES)
    raw.parse()
    return raw.headers["x-turnout-replica"]


def test_round_robin_rotation_is_exact(
    sdk: SDK, fake: Callable[..., Fake], gateway: Callable[..., Proc], tmp_path: Path
) -> None:
    fakes = [fake(name) for name in ("r0", "r1", "r2")]
    path = replicas_file(tmp_path, [{"url": f.url, "name": f.name} for f in fakes])
    gw = gateway(replicas_file=path, strategy="round_robin")
    client = sdk(gw)
    seen = [served_by(client) for _ in range(9)]
    assert seen == ["r0", "r1", "r2"] * 3
    # Each replica really answered its share (not just the header).
    assert [f.state()["requests"] for f in fakes] == [3, 3, 3]


def test_body_is_forwarded_unchanged_with_request_id(
    fake: Callable[..., Fake], gateway: Callable[..., Proc]
) -> None:
    replica = fake("r0")
    gw = gateway(replicas=[replica.url])
    body = (
        b'{"model": "m1",   "messages": [{"role":"user","content":"\\u00e9t\\u00e9"}], "x": 1.50}'
    )
    response = httpx.post(
        gw.url + "/v1/chat/completions",
        content=body,
        headers={"content-type": "application/json", "x-request-id": "trace-123"},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "trace-123"
    assert response.headers["x-turnout-replica"] == "127.0.0.1:" + str(replica.proc.port)
    state = replica.state()
    assert state["last_body"].encode() == body
    assert state["last_headers"]["x-request-id"] == "trace-123"


def test_request_id_is_generated_when_absent(
    sdk: SDK, fake: Callable[..., Fake], gateway: Callable[..., Proc]
) -> None:
    replica = fake("r0")
    gw = gateway(replicas=[replica.url])
    raw = sdk(gw).chat.completions.with_raw_response.create(model="m1", messages=MESSAGES)
    request_id = raw.headers["x-request-id"]
    assert len(request_id) == 32
    assert replica.state()["last_headers"]["x-request-id"] == request_id


def test_stream_is_relayed_chunk_for_chunk(
    sdk: SDK, fake: Callable[..., Fake], gateway: Callable[..., Proc]
) -> None:
    replica = fake("r0")
    replica.configure(chunks=20, chunk_delay=0.01)
    gw = gateway(replicas=[replica.url])
    request = {"model": "m1", "messages": MESSAGES, "stream": True}

    def raw_stream(base: str) -> bytes:
        with httpx.stream("POST", base + "/v1/chat/completions", json=request, timeout=10) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            return b"".join(r.iter_raw())

    assert raw_stream(gw.url) == raw_stream(replica.url)
    stream = sdk(gw).chat.completions.create(model="m1", messages=MESSAGES, stream=True)
    words = [chunk.choices[0].delta.content for chunk in stream]
    assert words == [f"w{i} " for i in range(20)]


def test_dead_replica_fails_over_then_is_ejected(
    sdk: SDK, fake: Callable[..., Fake], gateway: Callable[..., Proc], tmp_path: Path
) -> None:
    alive, doomed = fake("r0"), fake("r1")
    path = replicas_file(
        tmp_path, [{"url": alive.url, "name": "r0"}, {"url": doomed.url, "name": "r1"}]
    )
    gw = gateway(replicas_file=path, strategy="round_robin")
    client = sdk(gw)
    assert [served_by(client) for _ in range(2)] == ["r0", "r1"]
    doomed.proc.stop()
    # r0's turn, then r1's turn: r1 cannot be reached, the request goes to r0 instead.
    assert [served_by(client) for _ in range(2)] == ["r0", "r0"]
    replicas = {r["name"]: r for r in admin_replicas(gw)["replicas"]}
    assert replicas["r1"]["healthy"] is False
    assert replicas["r0"]["healthy"] is True
    # Ejected: every later request goes to r0 without trying r1.
    assert [served_by(client) for _ in range(4)] == ["r0"] * 4
    metrics = httpx.get(gw.url + "/metrics", timeout=5).text
    assert 'turnout_retries_total{model="m1"} 1.0' in metrics
    assert 'turnout_upstream_errors_total{kind="connect",replica="r1"} 1.0' in metrics
    assert 'turnout_replica_healthy{replica="r1"} 0.0' in metrics


@pytest.mark.parametrize("status", [503, 429])
def test_busy_replica_is_retried_once_elsewhere(
    sdk: SDK, status: int, fake: Callable[..., Fake], gateway: Callable[..., Proc], tmp_path: Path
) -> None:
    busy, good = fake("r0"), fake("r1")
    busy.configure(status=status)
    path = replicas_file(
        tmp_path, [{"url": busy.url, "name": "r0"}, {"url": good.url, "name": "r1"}]
    )
    gw = gateway(replicas_file=path, strategy="round_robin")
    client = sdk(gw)
    # Round robin sends the first request to r0, which answers `status`: retried on r1.
    assert served_by(client) == "r1"
    assert busy.state()["requests"] == 1
    assert good.state()["requests"] == 1
    metrics = httpx.get(gw.url + "/metrics", timeout=5).text
    assert 'turnout_retries_total{model="m1"} 1.0' in metrics
    assert f'turnout_upstream_errors_total{{kind="http_{status}",replica="r0"}} 1.0' in metrics


def test_a_request_tries_at_most_three_replicas(
    sdk: SDK, fake: Callable[..., Fake], gateway: Callable[..., Proc], tmp_path: Path
) -> None:
    fakes = [fake(name) for name in ("r0", "r1", "r2", "r3")]
    for f in fakes:
        f.configure(status=503)
    path = replicas_file(tmp_path, [{"url": f.url, "name": f.name} for f in fakes])
    gw = gateway(replicas_file=path, strategy="round_robin")
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(gw).chat.completions.create(model="m1", messages=MESSAGES)
    # The third replica's own 503 is relayed as it was; the fourth was never tried.
    assert caught.value.status_code == 503
    counts = {f.name: f.state()["requests"] for f in fakes}
    assert sorted(counts.values()) == [0, 1, 1, 1]
    assert counts[caught.value.response.headers["x-turnout-replica"]] == 1


def test_single_replica_503_is_relayed_not_retried(
    fake: Callable[..., Fake], gateway: Callable[..., Proc]
) -> None:
    replica = fake("r0")
    replica.configure(status=503)
    gw = gateway(replicas=[replica.url])
    response = httpx.post(
        gw.url + "/v1/completions", json={"model": "m1", "prompt": "x"}, timeout=10
    )
    assert response.status_code == 503
    assert response.json()["error"]["message"] == "fake"
    assert replica.state()["requests"] == 1


def test_broken_stream_ends_with_an_sse_error_event(
    fake: Callable[..., Fake], gateway: Callable[..., Proc], tmp_path: Path
) -> None:
    replica, other = fake("r0"), fake("r1")
    replica.configure(stall_after=2, chunks=5)
    path = replicas_file(
        tmp_path, [{"url": replica.url, "name": "r0"}, {"url": other.url, "name": "r1"}]
    )
    gw = gateway(replicas_file=path, idle_timeout=0.5)
    request = {"model": "m1", "messages": MESSAGES, "stream": True}
    with httpx.stream("POST", gw.url + "/v1/chat/completions", json=request, timeout=10) as r:
        body = b"".join(r.iter_raw())
    events = [e for e in body.split(b"\n\n") if e]
    assert len(events) == 3
    assert b'"w1 "' in events[1]
    assert events[2].startswith(b'data: {"error":')
    assert b"sent nothing for 0.5 s" in events[2]
    # After the first byte: never retried.
    assert other.state()["requests"] == 0


def test_stream_without_a_first_token_is_answered_504_at_the_first_byte_timeout(
    fake: Callable[..., Fake], gateway: Callable[..., Proc]
) -> None:
    replica = fake("r0")
    replica.configure(stall_after=0)
    gw = gateway(replicas=[replica.url], first_byte_timeout=0.5, idle_timeout=60)
    request = {"model": "m1", "messages": MESSAGES, "stream": True}
    response = httpx.post(gw.url + "/v1/chat/completions", json=request, timeout=10)
    # The replica's headers came, its first token did not: nothing went to the client
    # yet, so the answer is a plain error rather than a stream that breaks.
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert "no response within 0.5 s" in response.json()["error"]["message"]
    wait_until(lambda: replica.state()["active"] == 0, 5, "replica freed")
    metrics = httpx.get(gw.url + "/metrics", timeout=5).text
    assert 'kind="first_byte_timeout"' in metrics


def test_replica_down_at_start_up_means_503_with_retry_after(
    gateway: Callable[..., Proc], fake: Callable[..., Fake], tmp_path: Path
) -> None:
    # A port nobody listens on: the start-up health check takes the replica out.
    dead = f"http://127.0.0.1:{free_port()}"
    path = replicas_file(tmp_path, [{"url": dead, "name": "dead", "models": ["m1"]}])
    gw = gateway(replicas_file=path, health_interval=30)
    response = httpx.post(gw.url + "/v1/chat/completions", json={"model": "m1"}, timeout=10)
    # The start-up check already found it down: no healthy replica.
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_first_byte_timeout_answers_504_and_frees_the_replica(
    fake: Callable[..., Fake], gateway: Callable[..., Proc]
) -> None:
    replica = fake("r0")
    replica.configure(headers_delay=60)
    gw = gateway(replicas=[replica.url], first_byte_timeout=0.5)
    response = httpx.post(gw.url + "/v1/chat/completions", json={"model": "m1"}, timeout=10)
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert response.headers["x-turnout-replica"] == "127.0.0.1:" + str(replica.proc.port)
    wait_until(lambda: replica.state()["active"] == 0, 5, "replica freed")


def test_one_structured_log_line_per_request(
    fake: Callable[..., Fake], gateway: Callable[..., Proc]
) -> None:
    replica = fake("r0")
    gw = gateway(replicas=[replica.url], log_level="info")
    headers = {"x-request-id": "log-me"}
    httpx.post(gw.url + "/v1/completions", json={"model": "m1"}, headers=headers, timeout=10)
    httpx.post(gw.url + "/v1/completions", json={"model": "zz"}, timeout=10)

    def finished() -> list[dict[str, Any]]:
        lines = [line for line in gw.output().splitlines() if line.startswith("{")]
        events = [json.loads(line) for line in lines]
        return [e for e in events if e.get("event") == "request_finished"]

    wait_until(lambda: len(finished()) == 2, 5, "two request lines")
    ok, refused = finished()
    assert ok["request_id"] == "log-me"
    assert ok["model"] == "m1"
    assert ok["replica"] == "127.0.0.1:" + str(replica.proc.port)
    assert ok["strategy"] == "round_robin"
    assert ok["status"] == 200
    assert 0 < ok["ttfb"] <= ok["duration"] < 5
    assert ok["logger"] == "gateway.proxy"
    assert refused["status"] == 404
    assert refused["replica"] == "none"


def test_only_replica_unreachable_is_502_then_503(
    fake: Callable[..., Fake], gateway: Callable[..., Proc]
) -> None:
    replica = fake("r0")
    gw = gateway(replicas=[replica.url])
    replica.proc.stop()
    response = httpx.post(gw.url + "/v1/chat/completions", json={"model": "m1"}, timeout=10)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_unreachable"
    # Ejected by that failure: now the gateway knows before trying.
    response = httpx.post(gw.url + "/v1/chat/completions", json={"model": "m1"}, timeout=10)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "no_replica_available"
    assert httpx.get(gw.url + "/health", timeout=5).status_code == 503


def test_the_log_line_keeps_each_attempt_apart(
    fake: Callable[..., Fake], gateway: Callable[..., Proc], tmp_path: Path
) -> None:
    busy, slow = fake("r0"), fake("r1")
    busy.configure(status=503)
    slow.configure(headers_delay=60)
    path = replicas_file(tmp_path, [{"url": f.url, "name": f.name} for f in (busy, slow)])
    gw = gateway(replicas_file=path, strategy="round_robin", log_level="info")
    # r0 answers 503, the retry waits on r1, and the client leaves: the line says the
    # client left (not r0's 503), on r1, with r0's failure listed apart.
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(gw.url + "/v1/chat/completions", json={"model": "m1"}, timeout=1.0)

    def finished() -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in gw.output().splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("event") == "request_finished"]

    wait_until(lambda: len(finished()) == 1, 5, "the request's line")
    line = finished()[0]
    assert (line["status"], line["replica"], line["retried"]) == (499, "r1", True)
    assert line["error"] == "client_disconnected"
    [failed] = line["failed_attempts"]
    assert failed.startswith("r0: http_503 after ") and failed.endswith(" s")
