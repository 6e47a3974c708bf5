"""The relay's connections to a replica, end to end (the gateway, a fake replica, the
openai SDK): one connection carries request after request, streamed or not; a response
cut short (an error, a replica dropping mid-stream, a client leaving) closes its own;
a burst opens no more than it needs; and when traffic stops none is left open."""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest

from tests.gateway.conftest import SDK, Fake, wait_until
from tests.procs import Proc


def streamed_text(client: openai.OpenAI, chat: dict[str, Any]) -> str:
    stream = client.chat.completions.create(**chat, stream=True)
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def test_connections_are_reused_closed_when_cut_short_and_none_left_behind(
    fake: Callable[..., Fake],
    gateway: Callable[..., Proc],
    sdk: SDK,
    chat: dict[str, Any],
) -> None:
    replica = fake("r0")
    replica.configure(chunks=3)
    gw = gateway(replicas=[replica.url])
    client = sdk(gw)

    for _ in range(5):
        whole = client.chat.completions.create(**chat)
        assert whole.choices[0].message.content == "from r0"
        assert streamed_text(client, chat) == "w0 w1 w2 "
    assert (replica.state()["requests"], replica.state()["connections"]) == (10, 1)

    # An error from the replica is relayed as it is.
    replica.configure(status=500, status_times=1)
    with pytest.raises(openai.InternalServerError, match="fake"):
        client.chat.completions.create(**chat)
    # The replica drops the connection mid-stream: the stream ends with an error event.
    replica.configure(drop_after=2)
    with pytest.raises(openai.APIError, match="broke off the stream"):
        streamed_text(client, chat)
    replica.configure(drop_after=-1)
    # A client leaves mid-stream: its replica connection closes (the replica stops).
    replica.configure(chunk_delay=0.2, chunks=20)
    request = {**chat, "stream": True}
    with httpx.stream("POST", gw.url + "/v1/chat/completions", json=request, timeout=10) as r:
        next(r.iter_raw())
    wait_until(lambda: replica.state()["active"] == 0, 10, "the replica stopped")

    # A burst of 12 streams at once: at most one connection each, every stream whole.
    replica.configure(chunk_delay=0.05, chunks=3)
    before = replica.state()["connections"]
    with ThreadPoolExecutor(12) as threads:
        texts = list(threads.map(lambda _: streamed_text(client, chat), range(12)))
    assert texts == ["w0 w1 w2 "] * 12
    assert replica.state()["connections"] - before <= 12

    # Idle connections are closed after the keep-alive (4 s): nothing is left open.
    wait_until(lambda: replica.state()["open"] == 0, 15, "no connection left open")
    assert client.chat.completions.create(**chat).choices[0].message.content == "from r0"
