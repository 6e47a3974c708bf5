"""The server's guards, over real sockets: read timeout (408), header cap (431), connection
cap (503), malformed HTTP (400), and a client that stops reading a stream is cut, the
replica's request aborted. Every refusal is in OpenAI's error shape."""

import json
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager

import httpx

from tests.gateway.conftest import Fake, wait_until
from tests.procs import HOST, Proc

CHAT = b'{"model": "m1", "messages": [{"role": "user", "content": "hi"}]}'


@contextmanager
def connected(port: int, rcvbuf: int | None = None) -> Iterator[socket.socket]:
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    with closing(sock):
        sock.connect((HOST, port))
        sock.settimeout(15)
        yield sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def parse(raw: bytes) -> tuple[int, dict[str, str], dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, json.loads(body)


def assert_openai_error(body: dict[str, object], code: str) -> None:
    assert set(body) == {"error"}
    error = body["error"]
    assert isinstance(error, dict)
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code


def request_head(length: int) -> bytes:
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        f"content-length: {length}\r\n\r\n"
    ).encode()


def test_a_request_that_never_completes_is_answered_408_within_the_read_timeout(
    fake: Callable[..., Fake], gateway: Callable[..., Proc]
) -> None:
    replica = fake("r0")
    gw = gateway(replicas=[replica.url], read_timeout=1, log_level="info")
    # Headers cut short; then a body cut short (the handler is waiting for the rest).
    partials = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n", request_head(100) + b"{")
    for partial in partials:
        with connected(gw.port) as sock:
            started = time.monotonic()
            sock.sendall(partial)
            status, headers, body = parse(read_all(sock))
            waited = time.monotonic() - started
        assert status == 408
        assert headers["connection"] == "close"
        assert_openai_error(body, "request_timeout")
        assert 0.9 <= waited < 5, waited
    # A connection that sends nothing at all is closed too, without an answer.
    with connected(gw.port) as sock:
        assert read_all(sock) == b""
    # The gateway serves on, and the handler's log line names the reason.
    response = httpx.post(gw.url + "/v1/chat/completions", content=CHAT, timeout=10,
                          headers={"content-type": "application/json"})  # fmt: skip
    assert response.status_code == 200
    assert replica.state()["requests"] == 1
    lines = [json.loads(line) for line in gw.output().splitlines() if line.startswith("{")]
    finished = [line for line in lines if line.get("event") == "request_finished"]
    assert [(line["status"], line["error"]) for line in finished][:1] == [(408, "read_timeout")]
    metrics = httpx.get(gw.url + "/metrics", timeout=5).text
    assert 'turnout_client_cuts_total{reason="read_timeout"} 2.0' in metrics


def test_oversized_headers_and_malformed_requests_get_openai_errors(
    fake: Callable[..., Fake], gateway: Callable[..., Proc]
) -> None:
    gw = gateway(replicas=[fake("r0").url])
    with connected(gw.port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nx-big: " + b"a" * 70_000 + b"\r\n\r\n")
        status, _, body = parse(read_all(sock))
    assert status == 431
    assert_openai_error(body, "headers_too_large")
    with connected(gw.port) as sock:
        sock.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        status, _, body = parse(read_all(sock))
    assert status == 400
    assert_openai_error(body, None)  # type: ignore[arg-type]
    assert httpx.get(gw.url + "/health", timeout=5).status_code == 200


def test_connections_beyond_the_cap_get_503_and_the_gateway_recovers(
    fake: Callable[..., Fake], gateway: Callable[..., Proc]
) -> None:
    gw = gateway(replicas=[fake("r0").url], max_connections=3, read_timeout=30)
    held = [socket.create_connection((HOST, gw.port)) for _ in range(3)]
    try:
        with connected(gw.port) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
            status, headers, body = parse(read_all(sock))
        assert status == 503
        assert headers["retry-after"] == "1"
        assert_openai_error(body, "too_many_connections")
    finally:
        for sock in held:
            sock.close()

    def served() -> bool:
        return httpx.get(gw.url + "/health", timeout=5).status_code == 200

    wait_until(served, 5, "served again once the held connections closed")


def test_a_client_that_stops_reading_is_cut_and_the_replica_stops(
    fake: Callable[..., Fake], gateway: Callable[..., Proc]
) -> None:
    replica = fake("r0")
    # Far more than the socket buffers hold (~150 bytes an event).
    replica.configure(chunks=200_000)
    gw = gateway(replicas=[replica.url], send_timeout=1, log_level="info")
    body = b'{"model": "m1", "messages": [], "stream": true}'
    with connected(gw.port, rcvbuf=4096) as sock:
        sock.sendall(request_head(len(body)) + body)
        wait_until(lambda: replica.state()["active"] == 1, 10, "the stream started")
        # Read nothing: the gateway's buffers fill, it waits send_timeout, then cuts.
        wait_until(lambda: replica.state()["active"] == 0, 20, "the replica's request aborted")
    assert replica.state()["cancelled"] == 1
    wait_until(lambda: "send_timeout" in gw.output(), 5, "the cut is logged")
    lines = [json.loads(line) for line in gw.output().splitlines() if line.startswith("{")]
    cut = [line for line in lines if line.get("event") == "client_cut"]
    assert cut and cut[0]["reason"] == "send_timeout"
    finished = [line for line in lines if line.get("event") == "request_finished"]
    assert [(line["status"], line["error"]) for line in finished] == [(499, "send_timeout")]
    metrics = httpx.get(gw.url + "/metrics", timeout=5).text
    assert 'turnout_client_cuts_total{reason="send_timeout"} 1.0' in metrics
    assert 'turnout_in_flight{replica="127.0.0.1:' in metrics
    assert "} 0.0" in next(line for line in metrics.splitlines() if "turnout_in_flight{" in line)
