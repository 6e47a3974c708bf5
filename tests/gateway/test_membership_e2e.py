"""The membership admin API end to end: a gateway started with no replica
(GATEWAY_DISCOVERY=admin), fake replicas added, drained and removed at run time over HTTP,
the openai SDK as the client; streams in flight on a replica taken out finish whole."""

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import SDK, Fake, wait_until
from tests.procs import Proc

KEY = "admin-secret"
AUTH = {"authorization": f"Bearer {KEY}"}


def admin(gw: Proc, method: str, path: str, **kwargs: Any) -> httpx.Response:
    kwargs.setdefault("headers", AUTH)
    return httpx.request(method, gw.url + "/admin" + path, timeout=10, **kwargs)


def replicas(gw: Proc) -> dict[str, dict[str, Any]]:
    response = admin(gw, "GET", "/replicas")
    response.raise_for_status()
    return {r["name"]: r for r in response.json()["replicas"]}


def served_by(sdk: SDK, gw: Proc, chat: dict[str, Any], n: int) -> Counter[str]:
    client = sdk(gw)
    return Counter(
        client.chat.completions.create(**chat).choices[0].message.content or "" for _ in range(n)
    )


@pytest.fixture
def empty_gateway(gateway: Callable[..., Proc]) -> Proc:
    return gateway(discovery="admin", admin_key=KEY, poll_interval=0.2, health_interval=0.5)


def test_a_gateway_with_no_replica_starts_and_takes_them_at_run_time(
    empty_gateway: Proc, fake: Callable[..., Fake], sdk: SDK, chat: dict[str, Any]
) -> None:
    gw = empty_gateway
    assert replicas(gw) == {}
    assert httpx.get(gw.url + "/health", timeout=5).status_code == 503
    a, b = fake("a"), fake("b")

    added = admin(gw, "POST", "/replicas", json={"url": a.url, "name": "a"})
    assert added.status_code == 201, added.text
    body = added.json()
    # Its first health check ran before the answer: up, its kind and models known.
    assert body["healthy"] and body["state"] == "active" and body["source"] == "admin"
    assert body["models"] == ["m1"] and body["kind"] == "vllm"
    assert served_by(sdk, gw, chat, 3) == Counter({"from a": 3})

    # Registering again (a retried registration) changes nothing.
    again = admin(gw, "POST", "/replicas", json={"url": a.url + "/", "name": "a"})
    assert again.status_code == 200 and again.json()["name"] == "a"
    assert admin(gw, "POST", "/replicas", json={"url": b.url, "name": "b"}).status_code == 201
    assert served_by(sdk, gw, chat, 4) == Counter({"from a": 2, "from b": 2})

    # The poller follows: the added replicas get scraped.
    wait_until(
        lambda: all(r["metrics_age_s"] is not None for r in replicas(gw).values()),
        what="both added replicas scraped",
    )


def test_bad_membership_requests_get_openai_errors_naming_the_problem(
    empty_gateway: Proc, fake: Callable[..., Fake]
) -> None:
    gw = empty_gateway
    a = fake("a")
    cases: list[tuple[str, str, dict[str, Any], int, list[str]]] = [
        ("POST", "/replicas", {"json": {"name": "x"}}, 400, ["url", "Field required"]),
        ("POST", "/replicas", {"json": {"url": "ftp://h:1"}}, 400, ["http(s)://host:port"]),
        ("POST", "/replicas", {"json": {"url": a.url, "colour": 1}}, 400, ["colour", "allowed"]),
        ("POST", "/replicas", {"json": {"url": a.url, "kind": "tgi"}}, 400, ["tgi", "vllm"]),
        ("POST", "/replicas", {"json": [a.url]}, 400, ["body"]),
        ("POST", "/replicas", {"content": b"{not json"}, 400, ["JSON"]),
        ("DELETE", "/replicas/nope", {}, 404, ["nope"]),
        ("POST", "/replicas/nope/drain", {}, 404, ["nope"]),
    ]
    for method, path, kwargs, status, words in cases:
        headers = {**AUTH, "content-type": "application/json"}
        response = admin(gw, method, path, headers=headers, **kwargs)
        assert response.status_code == status, (path, kwargs, response.text)
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        for word in words:
            assert word in error["message"], (word, error)
    # Without the admin key: 401, and nothing was added.
    refused = admin(gw, "POST", "/replicas", headers={}, json={"url": a.url})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    assert replicas(gw) == {}
    # A name or URL that is taken by another replica: 409.
    assert admin(gw, "POST", "/replicas", json={"url": a.url, "name": "a"}).status_code == 201
    other = fake("other")
    for entry, param in (({"url": other.url, "name": "a"}, "name"), ({"url": a.url}, "url")):
        clash = admin(gw, "POST", "/replicas", json=entry)
        assert clash.status_code == 409, clash.text
        assert clash.json()["error"]["param"] == param
    assert list(replicas(gw)) == ["a"]


def _stream_in_background(
    sdk: SDK, gw: Proc, chat: dict[str, Any]
) -> tuple[threading.Thread, list[str]]:
    """A streamed chat through the gateway, read in a thread; the pieces land in the list."""
    pieces: list[str] = []
    client = sdk(gw, timeout=30.0)

    def read() -> None:
        for chunk in client.chat.completions.create(**chat, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
        pieces.append("[end]")

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread, pieces


def test_a_drained_replica_finishes_its_streams_and_gets_no_new_request(
    empty_gateway: Proc, fake: Callable[..., Fake], sdk: SDK, chat: dict[str, Any]
) -> None:
    gw = empty_gateway
    a, b = fake("a"), fake("b")
    admin(gw, "POST", "/replicas", json={"url": a.url, "name": "a"}).raise_for_status()
    a.configure(chunk_delay=0.3, chunks=5)
    thread, pieces = _stream_in_background(sdk, gw, chat)
    wait_until(lambda: a.state()["active"] == 1, what="the stream reached a")
    admin(gw, "POST", "/replicas", json={"url": b.url, "name": "b"}).raise_for_status()

    drained = admin(gw, "POST", "/replicas/a/drain")
    assert drained.status_code == 200 and drained.json()["state"] == "draining"
    before = a.state()["requests"]
    assert served_by(sdk, gw, chat, 4) == Counter({"from b": 4})
    thread.join(timeout=20)
    assert pieces == [f"w{i} " for i in range(5)] + ["[end]"]
    assert a.state()["requests"] == before
    # Back in routing after resume.
    assert admin(gw, "POST", "/replicas/a/resume").json()["state"] == "active"
    a.configure(chunk_delay=0.0)
    assert served_by(sdk, gw, chat, 4)["from a"] == 2


def test_a_removed_replica_leaves_once_its_stream_has_finished(
    empty_gateway: Proc, fake: Callable[..., Fake], sdk: SDK, chat: dict[str, Any]
) -> None:
    gw = empty_gateway
    a, b = fake("a"), fake("b")
    for name, replica in (("a", a), ("b", b)):
        admin(gw, "POST", "/replicas", json={"url": replica.url, "name": name}).raise_for_status()
    a.configure(chunk_delay=0.3, chunks=5)
    b.configure(chunk_delay=0.3, chunks=5)
    # round_robin: the first stream goes to one of them; find which.
    thread, pieces = _stream_in_background(sdk, gw, chat)
    wait_until(lambda: a.state()["active"] + b.state()["active"] == 1, what="a stream started")
    busy, idle = ("a", "b") if a.state()["active"] else ("b", "a")

    removal = admin(gw, "DELETE", f"/replicas/{busy}")
    assert removal.status_code == 200
    assert removal.json() == {"name": busy, "state": "leaving", "in_flight": 1}
    assert replicas(gw)[busy]["state"] == "leaving"
    a.configure(chunk_delay=0.0)
    b.configure(chunk_delay=0.0)
    assert served_by(sdk, gw, chat, 3) == Counter({f"from {idle}": 3})
    thread.join(timeout=20)
    assert pieces == [f"w{i} " for i in range(5)] + ["[end]"]
    wait_until(lambda: busy not in replicas(gw), what="the removed replica left the pool")

    # An idle replica leaves at once; the pool can be emptied and filled again.
    gone = admin(gw, "DELETE", f"/replicas/{idle}")
    assert gone.json() == {"name": idle, "state": "removed", "in_flight": 0}
    assert replicas(gw) == {}
    assert httpx.get(gw.url + "/v1/models", timeout=5).json()["data"] == []
    readd = admin(gw, "POST", "/replicas", json={"url": a.url, "name": "a"})
    assert readd.status_code == 201 and readd.json()["healthy"]
