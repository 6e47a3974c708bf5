"""Property-based fuzzing, with fixed seeds and bounded example counts.

- Hypothesis against the relay path, over a real socket: methods, paths, headers (hop-by-hop
  ones named in Connection among them), bodies (JSON of any depth, bytes, over the size
  limit), sent in pieces or cut short. Every answer is below 500 and, unless a success,
  in OpenAI's error shape; no header the client named in Connection reaches the replica;
  a good request is served after all of it.
- Schemathesis against the gateway's own OpenAPI description (GET /openapi.json, the
  non-relay endpoints), positive and negative cases: no 5xx, answers as described, and
  every 4xx in OpenAI's error shape.
"""

import json
import socket
import sys
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.procs import HOST, Proc, bin_path, free_port, start

MAX_BODY = 4096
READ_TIMEOUT = 0.3
RELAYED = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]
OTHER_PATHS = ["/v1/models", "/health", "/metrics", "/admin/replicas", "/nope", "/v1/"]
FUZZ = settings(
    max_examples=120,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[Proc, Proc]]:
    """A fake replica serving m1 and a gateway in front of it, for the whole module."""
    started: list[Proc] = []
    try:
        port = free_port()
        replica_argv = [sys.executable, "-m", "tests.gateway.fake_replica", "--port", str(port)]
        started.append(start([*replica_argv, "--name", "r0", "--models", "m1"], port=port))
        port = free_port()
        env = {
            "GATEWAY_REPLICAS": started[0].url,
            "GATEWAY_HEALTH_INTERVAL": "30",
            "GATEWAY_LOG_LEVEL": "error",
            "GATEWAY_MAX_BODY_BYTES": str(MAX_BODY),
            "GATEWAY_READ_TIMEOUT": str(READ_TIMEOUT),
        }
        started.append(start([bin_path("gateway"), "--port", str(port)], port=port, env=env))
        yield started[1], started[0]
    finally:
        for proc in reversed(started):
            proc.stop()


# -- the relay path, over raw sockets ------------------------------------------------------

TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
HEADER_VALUE = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40
).map(str.strip)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TOKEN, children, max_size=4),
    max_leaves=30,
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["chat", "chat", "json", "bytes", "nested", "huge"]))
    if kind == "chat":
        body: dict[str, Any] = {
            "model": draw(st.sampled_from(["m1", "m1", "zz", "", 3])),
            "messages": [{"role": "user", "content": draw(st.text(max_size=50))}],
        }
        if draw(st.booleans()):
            body["stream"] = draw(st.sampled_from([True, False, "yes", None]))
        body.update(draw(st.dictionaries(TOKEN, JSON_VALUES, max_size=3)))
        return json.dumps(body).encode()
    if kind == "json":
        return json.dumps(draw(JSON_VALUES)).encode()
    if kind == "nested":
        depth = draw(st.integers(1, 3000))
        return b"[" * depth + b"]" * draw(st.sampled_from([depth, 0]))
    if kind == "huge":
        pad = b"x" * draw(st.integers(MAX_BODY, 3 * MAX_BODY))
        return b'{"model": "m1", "pad": "' + pad + b'"}'
    return draw(st.binary(max_size=300))


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    body = draw(bodies())
    odd = ["GET", "PUT", "DELETE", "OPTIONS", "HEAD", "FOO"]
    method = draw(st.sampled_from(["POST"] * 6 + odd))
    path = draw(st.sampled_from(RELAYED * 3 + OTHER_PATHS))
    if draw(st.booleans()):
        path += "?" + draw(st.text(alphabet="abc=&%20", max_size=10))
    hop = draw(st.lists(TOKEN.map(lambda t: "x-hop-" + t), max_size=3, unique=True))
    headers: list[tuple[str, str]] = [("host", "gateway")]
    content_type = draw(
        st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain", None])
    )
    if content_type is not None:
        headers.append(("content-type", content_type))
    length = draw(st.sampled_from(["exact", "exact", "exact", "missing", "wrong", "garbage"]))
    if length == "exact":
        headers.append(("content-length", str(len(body))))
    elif length == "wrong":
        headers.append(("content-length", str(len(body) + draw(st.integers(1, 50)))))
    elif length == "garbage":
        headers.append(("content-length", draw(st.sampled_from(["-1", "abc", "1e3", " 5"]))))
    headers.extend((name, draw(HEADER_VALUE) or "v") for name in hop)
    headers.append(("connection", ", ".join(["close", *hop])))
    extra = st.tuples(TOKEN.map(lambda t: "x-" + t), HEADER_VALUE)
    headers.extend(draw(st.lists(extra, max_size=4)))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
    raw = head.encode() + b"\r\n" + body
    cut = draw(st.integers(0, 9)) == 0
    if cut:
        raw = raw[: draw(st.integers(1, len(raw) - 1))]
    pieces = draw(st.lists(st.integers(1, max(1, len(raw))), max_size=4))
    return {"raw": raw, "pieces": sorted(set(pieces)), "method": method, "hop": hop, "cut": cut}


def exchange(port: int, raw: bytes, pieces: list[int]) -> tuple[bytes, bool]:
    """Send `raw` in pieces and read everything until the server closes. Also says whether
    all of it could be sent (the server may answer and close before a body's end)."""
    with closing(socket.create_connection((HOST, port), timeout=10)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start_at = 0
        sent = True
        for end in [*pieces, len(raw)]:
            if end > start_at:
                try:
                    sock.sendall(raw[start_at:end])
                except (BrokenPipeError, ConnectionResetError):
                    sent = False
                    break
                start_at = end
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
        return data, sent


def check_answer(raw_answer: bytes, method: str) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw_answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
    assert status < 500, raw_answer[:500]
    if status >= 300 and method != "HEAD":
        error = json.loads(body)["error"]
        assert set(error) == {"message", "type", "param", "code"}, body
        assert isinstance(error["message"], str) and error["message"]
    return status, headers, body


def test_relay_path_answers_everything_in_openai_shape(stack: tuple[Proc, Proc]) -> None:
    gw, replica = stack

    @seed(18)
    @FUZZ
    @given(request=requests())
    def one(request: dict[str, Any]) -> None:
        answer, sent = exchange(gw.port, request["raw"], request["pieces"])
        if not answer:
            # The server closed before the client was done (its answer lost to the reset),
            # or the request was cut before its request line ended: nothing to answer.
            assert not sent or (request["cut"] and b"\r\n" not in request["raw"]), request
            return
        status, _, _ = check_answer(answer, request["method"])
        if status == 200 and request["hop"]:
            seen = httpx.get(replica.url + "/fake/state", timeout=5).json()["last_headers"]
            assert not set(request["hop"]) & set(seen), (request["hop"], seen)
            assert "connection" not in seen or "x-hop" not in seen["connection"]

    one()
    chat = {"model": "m1", "messages": [{"role": "user", "content": "hi"}]}
    assert httpx.post(gw.url + "/v1/chat/completions", json=chat, timeout=10).status_code == 200


# -- the gateway's own endpoints, from their OpenAPI description ------------------------------


def test_own_endpoints_hold_to_their_openapi_description(stack: tuple[Proc, Proc]) -> None:
    gw, _ = stack
    raw_schema = httpx.get(gw.url + "/openapi.json", timeout=5).json()
    assert "/admin/strategy" in raw_schema["paths"]
    assert not set(RELAYED) & set(raw_schema["paths"])
    schema = schemathesis.openapi.from_dict(raw_schema)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 9
    # A well-formed POST /admin/replicas makes the gateway contact the URL it names, which
    # fuzzing must not aim anywhere; tests/gateway/test_membership_e2e.py covers its answers.
    operations = [op for op in operations if op.label != "POST /admin/replicas"]
    assert len(operations) == 8

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if mode is GenerationMode.NEGATIVE and not len(operation.body):
                # Nothing to make invalid: no body, and a path's string is any string.
                continue

            @seed(18)
            @settings(FUZZ, max_examples=25)
            @given(case=operation.as_strategy(generation_mode=mode))
            def one(case: schemathesis.Case) -> None:
                # A strategy's options are checked against its constructor, which the
                # description cannot say: a well-formed body may still name one it lacks.
                positive = mode is GenerationMode.POSITIVE  # noqa: B023 (called in this turn)
                options = case.path == "/admin/strategy" and positive
                excluded = [positive_data_acceptance] if options else []
                response = case.call_and_validate(base_url=gw.url, excluded_checks=excluded)
                if response.status_code >= 400:
                    error = response.json()["error"]
                    assert set(error) == {"message", "type", "param", "code"}
                    if options:
                        assert (response.status_code, error["param"]) == (400, "options")

            one()
