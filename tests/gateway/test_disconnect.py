"""A client that goes away closes the upstream request, in every phase, and the gateway's
in-flight count comes back to zero."""

from collections.abc import Callable
from typing import Any

import openai
import pytest

from tests.gateway.conftest import SDK, Fake, admin_replicas, wait_until
from tests.procs import Proc

MESSAGES: Any = [{"role": "user", "content": "hello"}]


def in_flight(gw: Proc) -> int:
    return sum(r["in_flight"] for r in admin_replicas(gw)["replicas"])


def test_disconnect_during_non_streaming_request(
    sdk: SDK, fake: Callable[..., Fake], gateway: Callable[..., Proc]
) -> None:
    replica = fake("r0")
    replica.configure(headers_delay=60)
    gw = gateway(replicas=[replica.url])
    client = sdk(gw, timeout=1.0)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="m1", messages=MESSAGES)
    assert replica.state()["requests"] == 1
    wait_until(lambda: replica.state()["active"] == 0, 5, "replica stopped working")
    wait_until(lambda: in_flight(gw) == 0, 5, "gateway in-flight back to 0")
    assert replica.state()["cancelled"] == 1


@pytest.mark.parametrize(
    ("phase", "config", "chunks_read"),
    [
        ("waiting for headers", {"headers_delay": 60}, 0),
        ("waiting for the first token", {"stall_after": 0}, 0),
        ("mid-stream", {"stall_after": 3, "chunks": 10}, 2),
    ],
)
def test_disconnect_during_stream(
    sdk: SDK,
    phase: str,
    config: dict[str, Any],
    chunks_read: int,
    fake: Callable[..., Fake],
    gateway: Callable[..., Proc],
) -> None:
    replica = fake("r0")
    replica.configure(**config)
    gw = gateway(replicas=[replica.url])
    client = sdk(gw, timeout=1.0)
    if chunks_read == 0:
        with pytest.raises(openai.APITimeoutError):
            stream = client.chat.completions.create(model="m1", messages=MESSAGES, stream=True)
            for _ in stream:
                pass
    else:
        stream = client.chat.completions.create(model="m1", messages=MESSAGES, stream=True)
        for i, chunk in enumerate(stream):
            assert chunk.choices[0].delta.content == f"w{i} "
            if i + 1 == chunks_read:
                break
        stream.close()
    wait_until(lambda: replica.state()["requests"] == 1, 5, "the request reached the replica")
    wait_until(lambda: replica.state()["active"] == 0, 5, f"replica stopped ({phase})")
    wait_until(lambda: in_flight(gw) == 0, 5, f"gateway in-flight back to 0 ({phase})")
    assert replica.state()["cancelled"] == 1
