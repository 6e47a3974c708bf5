"""What a strategy learns in the gateway: the request's facts, and how it ended."""

import time
from collections.abc import Callable, Sequence

from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.settings import GatewaySettings
from routers import Outcome, ReplicaView, RouteRequest
from routers.types import StrategyBase
from tests.gateway.conftest import Fake

SYSTEM = "You are a terse assistant who answers in one word. " * 4


class Recorder(StrategyBase):
    name = "recorder"

    def __init__(self) -> None:
        self.requests: list[RouteRequest] = []
        self.outcomes: list[Outcome] = []

    def choose(self, request: RouteRequest, candidates: Sequence[ReplicaView]) -> ReplicaView:
        self.requests.append(request)
        return candidates[0]

    def on_request_finished(self, request: RouteRequest, outcome: Outcome) -> None:
        self.outcomes.append(outcome)


def test_strategies_see_size_prefix_and_session_and_hear_ttfb(
    fake: Callable[..., Fake],
) -> None:
    replica = fake("r1", models=["m1"])
    replica.configure(headers_delay=0.05)
    settings = GatewaySettings(replicas=[replica.url], health_interval=30)
    recorder = Recorder()
    with TestClient(create_app(settings)) as client:
        gw = client.app_state["gateway"]
        gw.use_strategy(recorder)
        for question, headers, user in (
            ("What is two plus two? " * 6, {"x-session-id": "s-1"}, None),
            ("Name a colour you like. " * 6, {}, "alice"),
        ):
            body = {
                "model": "m1",
                "max_tokens": 4,
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": question},
                ],
            }
            if user:
                body["user"] = user
            assert client.post("/v1/chat/completions", json=body, headers=headers).is_success
    first, second = recorder.requests
    assert (first.session, second.session) == ("s-1", "alice")
    # The time comes with the request, on the pool's clock (metrics ages are on it too).
    assert first.now is not None and second.now is not None
    assert 0 < second.now - first.now < 30
    assert 80 <= first.prompt_tokens_estimate <= 100  # ~350 characters of text, two messages
    shared = len(SYSTEM) // 64
    assert first.prefix_hashes[: shared - 1] == second.prefix_hashes[: shared - 1]
    assert first.prefix_hashes != second.prefix_hashes
    assert [o.replica_id for o in recorder.outcomes] == [
        "127.0.0.1:" + replica.url.split(":")[-1]
    ] * 2
    assert all(o.ok and o.ttfb_s is not None and o.ttfb_s >= 0.05 for o in recorder.outcomes)
    pool = gw.pool
    assert all(r.in_flight == 0 and r.awaiting_first_byte == 0 for r in pool)
    assert all(r.awaiting_prompt_tokens == 0 for r in pool)


class Blind(Recorder):
    reads_prefix_hashes = False


def test_a_strategy_that_reads_no_prefix_hashes_gets_none(fake: Callable[..., Fake]) -> None:
    replica = fake("r1", models=["m1"])
    settings = GatewaySettings(replicas=[replica.url], health_interval=30)
    body = {"model": "m1", "messages": [{"role": "system", "content": SYSTEM}]}
    seen = []
    with TestClient(create_app(settings)) as client:
        gw = client.app_state["gateway"]
        for strategy in (Blind(), Recorder()):
            gw.use_strategy(strategy)
            assert client.post("/v1/chat/completions", json=body).is_success
            [request] = strategy.requests
            seen.append(request)
    blind, reader = seen
    assert blind.prefix_hashes == ()
    assert len(reader.prefix_hashes) == len(SYSTEM) // 64
    # The size estimate does not depend on the hashes.
    assert blind.prompt_tokens_estimate == reader.prompt_tokens_estimate > 0


def test_a_streams_chunks_time_its_replicas_steps(fake: Callable[..., Fake]) -> None:
    # The fake sends a chunk every 40 ms, as an engine sends a token a step: the pool
    # learns that step's length, and when the last one ended, on its own clock.
    replica = fake("r1", models=["m1"])
    replica.configure(chunk_delay=0.04, chunks=8)
    settings = GatewaySettings(replicas=[replica.url], health_interval=30)
    body = {
        "model": "m1",
        "max_tokens": 8,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    with TestClient(create_app(settings)) as client:
        gw = client.app_state["gateway"]
        (before,) = gw.pool.candidates("m1")
        assert before.step_ends_at == 0.0
        reply = client.post("/v1/chat/completions", json=body)
        assert reply.is_success and reply.text.count("data:") >= 8
        (after,) = gw.pool.candidates("m1")
        (replica_state,) = gw.pool
    assert 0.035 <= replica_state.step_seconds <= 0.4
    ended = replica_state.step_ended_at
    assert ended is not None and 0 <= time.monotonic() - ended < 30
    assert after.step_ends_at == 0.0  # nothing in flight there now: no step seen
