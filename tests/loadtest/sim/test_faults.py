"""Fault injection: the Faults value, and each fault on a real `vllm-sim serve` process."""

import random
import time
from collections import Counter
from collections.abc import Callable, Iterator

import httpx
import openai
import pytest

from loadtest.sim.faults import Faults, FaultsInvalid
from tests.loadtest.sim.serving import MODEL, SdkFactory, sdk_clients, serve_argv
from tests.procs import Proc

MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture
def sdk() -> Iterator[SdkFactory]:
    yield from sdk_clients()


def set_faults(proc: Proc, **faults: object) -> dict[str, object]:
    response = httpx.post(proc.url + "/sim/faults", json=faults, timeout=5)
    assert response.status_code == 200, response.text
    return dict(response.json())


# -- the value ---------------------------------------------------------------------------


def test_updates_merge_and_reset() -> None:
    faults = Faults().updated({"error_rate": 0.5}).updated({"health_fail": True})
    assert faults.error_rate == 0.5 and faults.health_fail
    assert faults.updated({"reset": True, "stall_after": 3}) == Faults(stall_after=3)


@pytest.mark.parametrize(
    "change",
    [
        {"error_rat": 0.1},
        {"error_rate": 1.5},
        {"drop_rate": -0.1},
        {"step_multiplier": 0},
        {"health_fail": 1},
        {"metrics_delay": "1"},
        {"stall_after": 2.5},
        {"error_status": 404},
        {"reset": "yes"},
        [],
    ],
)
def test_bad_updates_are_refused(change: object) -> None:
    with pytest.raises(FaultsInvalid):
        Faults().updated(change)


def test_draws_follow_the_rates() -> None:
    faults = Faults(drop_rate=0.1, error_rate=0.2, rate_limit_rate=0.3)
    rng = random.Random(7)
    counts = Counter(faults.draw(rng) for _ in range(20_000))
    assert abs(counts["drop"] / 20_000 - 0.1) < 0.01
    assert abs(counts["error"] / 20_000 - 0.2) < 0.01
    assert abs(counts["rate_limit"] / 20_000 - 0.3) < 0.01
    assert Faults().draw(rng) == "ok"


# -- on a running replica ----------------------------------------------------------------


def test_errors_rate_limits_and_reset(spawn: Callable[..., Proc], sdk: SdkFactory) -> None:
    proc = spawn(serve_argv())
    assert httpx.get(proc.url + "/sim/faults").json() == Faults().as_dict()
    set_faults(proc, error_rate=1.0)
    with pytest.raises(openai.InternalServerError):
        sdk(proc).chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=3)
    set_faults(proc, error_status=503)
    response = httpx.post(proc.url + "/v1/completions", json={"model": MODEL, "prompt": "x"})
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "ServiceUnavailableError"
    set_faults(proc, reset=True, rate_limit_rate=1.0)
    with pytest.raises(openai.RateLimitError):
        sdk(proc).chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=3)
    raw = httpx.post(proc.url + "/v1/completions", json={"model": MODEL, "prompt": "x"})
    assert raw.status_code == 429 and raw.headers["retry-after"] == "1"
    assert raw.json()["error"]["type"] == "RateLimitError"
    assert httpx.delete(proc.url + "/sim/faults").json()["rate_limit_rate"] == 0
    reply = sdk(proc).chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=3)
    assert reply.choices[0].message.content


def test_dropped_connections_get_no_response(spawn: Callable[..., Proc], sdk: SdkFactory) -> None:
    proc = spawn(serve_argv("--fault-drop-rate", "1"))
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(proc.url + "/v1/completions", json={"model": MODEL, "prompt": "x"}, timeout=5)
    with pytest.raises(openai.APIConnectionError):
        sdk(proc).chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=3)
    assert httpx.get(proc.url + "/health").status_code == 200


def test_health_fails_by_flag_and_recovers(spawn: Callable[..., Proc]) -> None:
    flags = ("--fault-health-fail", "--fault-429-rate", "0.5", "--fault-error-status", "502")
    proc = spawn(serve_argv(*flags))
    shown = httpx.get(proc.url + "/sim/faults").json()
    assert shown["health_fail"] is True and shown["rate_limit_rate"] == 0.5
    assert shown["error_status"] == 502
    response = httpx.get(proc.url + "/health")
    assert response.status_code == 503 and response.json()["error"]["code"] == 503
    set_faults(proc, health_fail=False)
    assert httpx.get(proc.url + "/health").status_code == 200


def test_slow_and_hanging_metrics(spawn: Callable[..., Proc]) -> None:
    proc = spawn(serve_argv())
    set_faults(proc, metrics_delay=0.5)
    started = time.monotonic()
    assert httpx.get(proc.url + "/metrics", timeout=5).status_code == 200
    assert time.monotonic() - started >= 0.5
    set_faults(proc, metrics_delay=0, metrics_hang=True)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(proc.url + "/metrics", timeout=0.5)
    assert httpx.get(proc.url + "/health", timeout=1).status_code == 200  # the rest answers
    set_faults(proc, metrics_hang=False)
    assert "vllm:num_requests_running" in httpx.get(proc.url + "/metrics", timeout=5).text


def test_step_multiplier_slows_the_replica(spawn: Callable[..., Proc], sdk: SdkFactory) -> None:
    proc = spawn(serve_argv())

    def timed() -> float:
        started = time.monotonic()
        sdk(proc).completions.create(
            model=MODEL, prompt="x", max_tokens=30, extra_body={"ignore_eos": True}
        )
        return time.monotonic() - started

    fast = min(timed() for _ in range(3))
    set_faults(proc, step_multiplier=40.0)
    slow = timed()
    # 30 decode steps of the tiny profile take at least ~0.6 ms each, so 40x sleeps >= 0.7 s.
    assert slow >= 0.7
    assert fast < slow / 4


def test_stream_stalls_mid_way(spawn: Callable[..., Proc]) -> None:
    proc = spawn(serve_argv())
    set_faults(proc, stall_after=3)
    body = {"model": MODEL, "prompt": "x", "max_tokens": 50, "ignore_eos": True, "stream": True}
    got: list[str] = []
    with (
        httpx.stream("POST", proc.url + "/v1/completions", json=body, timeout=0.5) as response,
        pytest.raises(httpx.ReadTimeout),
    ):
        got.extend(line for line in response.iter_lines() if line)
    assert sum(line.count('"text":') for line in got) == 3  # three tokens, then silence
    set_faults(proc, stall_seconds=0.3)
    started = time.monotonic()
    with httpx.stream("POST", proc.url + "/v1/completions", json=body, timeout=5) as response:
        lines = [line for line in response.iter_lines() if line]
    assert time.monotonic() - started >= 0.3
    assert lines[-1] == "data: [DONE]"


def test_bad_fault_updates_get_openai_errors(spawn: Callable[..., Proc]) -> None:
    proc = spawn(serve_argv())
    response = httpx.post(proc.url + "/sim/faults", json={"error_rate": 2})
    assert response.status_code == 400 and response.json()["error"]["param"] == "error_rate"
    response = httpx.post(proc.url + "/sim/faults", content=b"{oops")
    assert response.status_code == 400 and response.json()["error"]["message"]
    assert httpx.get(proc.url + "/sim/faults").json() == Faults().as_dict()


def test_streams_cut_mid_way(spawn: Callable[..., Proc]) -> None:
    proc = spawn(serve_argv("--fault-drop-after", "4"))
    body = {"model": MODEL, "prompt": "x", "max_tokens": 50, "ignore_eos": True, "stream": True}
    got: list[str] = []
    with (
        httpx.stream("POST", proc.url + "/v1/completions", json=body, timeout=5) as response,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        got.extend(line for line in response.iter_lines() if line)
    assert response.status_code == 200
    assert sum(line.count('"text":') for line in got) >= 4
    assert "data: [DONE]" not in got
    set_faults(proc, drop_after=None)
    with httpx.stream("POST", proc.url + "/v1/completions", json=body, timeout=5) as response:
        assert [line for line in response.iter_lines() if line][-1] == "data: [DONE]"
