"""Bad input never reaches a replica and always gets OpenAI's error shape."""

import sys
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.gateway.conftest import SDK, Fake
from tests.procs import Proc, bin_path, free_port, start

KEY = "sk-client"
ADMIN = "sk-admin"
LIMIT = 2048


@pytest.fixture(scope="module")
def setup() -> Iterator[tuple[Proc, Fake]]:
    """One fake replica serving m1 and m2, one gateway with client keys and an admin key."""
    procs: list[Proc] = []
    try:
        port = free_port()
        argv = [sys.executable, "-m", "tests.gateway.fake_replica", "--port", str(port)]
        replica = start([*argv, "--name", "r0", "--models", "m1,m2"], port=port)
        procs.append(replica)
        port = free_port()
        env = {
            "GATEWAY_REPLICAS": replica.url,
            "GATEWAY_API_KEYS": f"{KEY},sk-other",
            "GATEWAY_ADMIN_KEY": ADMIN,
            "GATEWAY_MAX_BODY_BYTES": str(LIMIT),
            "GATEWAY_LOG_LEVEL": "warning",
        }
        gw = start([bin_path("gateway"), "--port", str(port)], port=port, env=env)
        procs.append(gw)
        yield gw, Fake(replica, "r0")
    finally:
        for proc in reversed(procs):
            proc.stop()


def post(gw: Proc, body: bytes, **headers: str) -> httpx.Response:
    sent = {"content-type": "application/json", "authorization": f"Bearer {KEY}", **headers}
    return httpx.post(gw.url + "/v1/chat/completions", content=body, headers=sent, timeout=10)


def assert_openai_error(response: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    for word in words:
        assert word in body["error"]["message"]
    assert "x-request-id" in response.headers
    assert "x-turnout-replica" in response.headers
    return body["error"]


@pytest.mark.parametrize(
    ("body", "headers", "status", "words"),
    [
        (b"{not json", {}, 400, ["not valid JSON"]),
        (b"[1, 2]", {}, 400, ["JSON object"]),
        (b'{"messages": []}', {}, 400, ["missing 'model'"]),
        (b'{"model": 7}', {}, 400, ["missing 'model'"]),
        (b'{"model": "gpt-9"}', {}, 404, ["'gpt-9'", "m1, m2"]),
        (b'{"model": "m1", "pad": "' + b"x" * LIMIT + b'"}', {}, 413, [str(LIMIT)]),
        (b'{"model": "m1"}', {"content-type": "text/plain"}, 415, ["application/json"]),
        (b'{"model": "m1"}', {"authorization": ""}, 401, ["missing API key"]),
        (b'{"model": "m1"}', {"authorization": "Bearer sk-wrong"}, 401, ["invalid API key"]),
        (b'{"model": "m1"}', {"authorization": f"Basic {KEY}"}, 401, ["invalid API key"]),
    ],
)
def test_bad_request_is_refused_before_any_replica(
    setup: tuple[Proc, Fake], body: bytes, headers: dict[str, str], status: int, words: list[str]
) -> None:
    gw, replica = setup
    before = replica.state()["requests"]
    assert_openai_error(post(gw, body, **headers), status, *words)
    assert replica.state()["requests"] == before


def test_body_over_limit_without_content_length(setup: tuple[Proc, Fake]) -> None:
    """A chunked body (no Content-Length) is measured while it is read."""
    gw, replica = setup
    before = replica.state()["requests"]

    def chunks() -> Iterator[bytes]:
        yield b'{"model": "m1", "pad": "'
        for _ in range(LIMIT // 256 + 2):
            yield b"x" * 256
        yield b'"}'

    response = httpx.post(
        gw.url + "/v1/chat/completions",
        content=chunks(),
        headers={"content-type": "application/json", "authorization": f"Bearer {KEY}"},
        timeout=10,
    )
    assert_openai_error(response, 413)
    assert replica.state()["requests"] == before


def test_sdk_sees_typed_errors(sdk: SDK, setup: tuple[Proc, Fake]) -> None:
    gw, _ = setup
    with pytest.raises(openai.AuthenticationError):
        sdk(gw, key="sk-wrong").chat.completions.create(model="m1", messages=[])
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(gw, key=KEY).chat.completions.create(model="nope", messages=[])
    assert caught.value.code == "model_not_found"
    # Both keys are accepted.
    for key in (KEY, "sk-other"):
        reply = sdk(gw, key=key).chat.completions.create(model="m2", messages=[])
        assert reply.choices[0].message.content == "from r0"


def test_client_key_is_not_forwarded(setup: tuple[Proc, Fake]) -> None:
    gw, replica = setup
    assert post(gw, b'{"model": "m1"}').status_code == 200
    assert "authorization" not in replica.state()["last_headers"]


def test_models_need_a_key_too(sdk: SDK, setup: tuple[Proc, Fake]) -> None:
    gw, _ = setup
    assert_openai_error(httpx.get(gw.url + "/v1/models", timeout=5), 401)
    models = sdk(gw, key=KEY).models.list()
    assert [m.id for m in models.data] == ["m1", "m2"]


def test_admin_needs_the_admin_key(setup: tuple[Proc, Fake]) -> None:
    gw, _ = setup
    for headers in ({}, {"authorization": f"Bearer {KEY}"}):
        response = httpx.get(gw.url + "/admin/replicas", headers=headers, timeout=5)
        assert_openai_error(response, 401, "admin key")
        response = httpx.put(
            gw.url + "/admin/strategy", json={"strategy": "queue_depth"}, headers=headers, timeout=5
        )
        assert_openai_error(response, 401)
    ok = httpx.get(
        gw.url + "/admin/replicas", headers={"authorization": f"Bearer {ADMIN}"}, timeout=5
    )
    assert ok.status_code == 200


def test_unknown_path_and_wrong_method(setup: tuple[Proc, Fake]) -> None:
    gw, _ = setup
    assert_openai_error(httpx.get(gw.url + "/v1/nothing", timeout=5), 404, "/v1/nothing")
    assert_openai_error(httpx.get(gw.url + "/v1/chat/completions", timeout=5), 405)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{}", ["strategy"]),
        (b'{"strategy": 3}', ["strategy"]),
        (b"not json", ["invalid request"]),
        (b'{"strategy": "fastest"}', ["unknown strategy 'fastest'", "queue_depth, round_robin"]),
        (b'{"strategy": "p2c", "options": {"choices": 1}}', ["choices must be at least 2"]),
        (b'{"strategy": "p2c", "options": {"chioces": 3}}', ["no option 'chioces'", "choices"]),
        (b'{"strategy": "p2c", "options": "choices=3"}', ["options"]),
    ],
)
def test_bad_strategy_switch(setup: tuple[Proc, Fake], body: bytes, words: list[str]) -> None:
    gw, _ = setup
    response = httpx.put(
        gw.url + "/admin/strategy",
        content=body,
        headers={"authorization": f"Bearer {ADMIN}", "content-type": "application/json"},
        timeout=5,
    )
    assert_openai_error(response, 400, *words)
    replicas = httpx.get(
        gw.url + "/admin/replicas", headers={"authorization": f"Bearer {ADMIN}"}, timeout=5
    )
    assert replicas.json()["strategy"] == "round_robin"
