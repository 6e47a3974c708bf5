"""queue_depth, the poller and the health checker end to end: simulated vLLM replicas
and a gateway as real processes, the openai SDK as the client."""

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai

from tests.gateway.conftest import SDK, admin_replicas, replicas_file, wait_until
from tests.loadtest.sim.serving import MODEL, serve_argv
from tests.procs import Proc

MESSAGES: Any = [{"role": "user", "content": "hello"}]


def fleet(spawn: Callable[..., Proc], *flag_sets: list[str]) -> list[Proc]:
    return [spawn(serve_argv(*flags)) for flags in flag_sets]


def start_gateway(
    gateway: Callable[..., Proc], tmp_path: Path, sims: list[Proc], **settings: Any
) -> Proc:
    path = replicas_file(tmp_path, [{"url": s.url, "name": f"r{i}"} for i, s in enumerate(sims)])
    return gateway(replicas_file=path, **settings)


def by_name(gw: Proc) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in admin_replicas(gw)["replicas"]}


def long_streams(sim: Proc, n: int, max_tokens: int) -> list[threading.Thread]:
    """n long streams straight to a replica (not through the gateway), in the background.
    They end when the replica is stopped at the end of the test."""

    def one() -> None:
        client = openai.OpenAI(base_url=sim.url + "/v1", api_key="x", max_retries=0, timeout=60)
        try:
            stream = client.chat.completions.create(
                model=MODEL,
                messages=MESSAGES,
                max_tokens=max_tokens,
                stream=True,
                extra_body={"ignore_eos": True},
            )
            for _ in stream:
                pass
        except openai.OpenAIError:
            pass
        finally:
            client.close()

    threads = [threading.Thread(target=one, daemon=True) for _ in range(n)]
    for thread in threads:
        thread.start()
    return threads


def burst(client: openai.OpenAI, n: int, max_tokens: int = 8) -> Counter[str]:
    """n concurrent chat completions through the gateway; which replica served each."""

    def one(_: int) -> str:
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=MESSAGES, max_tokens=max_tokens, extra_body={"ignore_eos": True}
        )
        raw.parse()
        return raw.headers["x-turnout-replica"]

    with ThreadPoolExecutor(max_workers=n) as pool:
        return Counter(pool.map(one, range(n)))


def test_queue_depth_steers_a_burst_away_from_a_long_queue(
    spawn: Callable[..., Proc], gateway: Callable[..., Proc], sdk: SDK, tmp_path: Path
) -> None:
    # r0 runs one request at a time, 20x slower than its peers: a queue builds there.
    sims = fleet(spawn, ["--max-num-seqs", "1", "--fault-slow", "20"], [], [])
    gw = start_gateway(gateway, tmp_path, sims, strategy="queue_depth", poll_interval=0.5)
    long_streams(sims[0], 8, max_tokens=400)
    wait_until(lambda: (by_name(gw)["r0"]["waiting"] or 0) >= 6, what="r0's queue is scraped")

    served = burst(sdk(gw, timeout=30), 12)
    # r0 has 7 waiting; the idle pair take the burst (they stay under 7 each).
    assert served["r0"] == 0, served
    assert served["r1"] >= 3 and served["r2"] >= 3, served


def test_a_burst_after_one_scrape_does_not_herd(
    spawn: Callable[..., Proc], gateway: Callable[..., Proc], sdk: SDK, tmp_path: Path
) -> None:
    # At scrape time r0 is idle and r1, r2 run one request each: r0 "looks emptiest".
    # Trusting that scrape for the next second would send the whole burst to r0.
    sims = fleet(spawn, *[["--time-scale", "5"]] * 3)
    gw = start_gateway(gateway, tmp_path, sims, strategy="queue_depth", poll_interval=1.0)
    for sim in sims[1:]:
        long_streams(sim, 1, max_tokens=3500)  # ~10 s at this time scale: the whole test

    def scraped_busy() -> bool:
        replicas = by_name(gw)
        return all(not r["metrics_stale"] for r in replicas.values()) and all(
            replicas[name]["running"] == 1 for name in ("r1", "r2")
        )

    wait_until(scraped_busy, what="r1 and r2 scraped as running one each")
    served = burst(sdk(gw, timeout=30), 30, max_tokens=20)
    assert sum(served.values()) == 30
    # The credit for what was sent since the scrape spreads the burst: about 10 each.
    assert all(6 <= served[name] <= 14 for name in ("r0", "r1", "r2")), served


def test_a_hanging_metrics_endpoint_does_not_delay_requests(
    spawn: Callable[..., Proc], gateway: Callable[..., Proc], sdk: SDK, tmp_path: Path
) -> None:
    sims = fleet(spawn, ["--fault-metrics-hang"], [])
    gw = start_gateway(gateway, tmp_path, sims, strategy="queue_depth", poll_interval=0.5)
    client = sdk(gw, timeout=10)
    seen: Counter[str] = Counter()
    slowest = 0.0
    for _ in range(12):
        started = time.monotonic()
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=MESSAGES, max_tokens=4
        )
        raw.parse()
        slowest = max(slowest, time.monotonic() - started)
        seen[raw.headers["x-turnout-replica"]] += 1
    # Requests never wait on a scrape: each takes milliseconds, not the hang.
    assert slowest < 2.0, slowest
    # r0's metrics are unknown, not idle: both replicas are used, by local counts.
    assert set(seen) == {"r0", "r1"}, seen
    # r1 is scraped all the while; r0 never is.
    wait_until(lambda: not by_name(gw)["r1"]["metrics_stale"], what="r1 scraped")
    replicas = by_name(gw)
    assert replicas["r0"]["metrics_stale"] and replicas["r0"]["waiting"] is None


def test_a_down_replica_is_ejected_and_restored_by_active_checks(
    spawn: Callable[..., Proc], gateway: Callable[..., Proc], sdk: SDK, tmp_path: Path
) -> None:
    sims = fleet(spawn, [], [])
    gw = start_gateway(
        gateway, tmp_path, sims, strategy="round_robin", health_interval=0.3, poll_interval=0.5
    )
    client = sdk(gw)

    def healthy(name: str) -> bool:
        return bool(by_name(gw)[name]["healthy"])

    # /health failing (an engine that died inside a live server): out, then back.
    httpx.post(sims[0].url + "/sim/faults", json={"health_fail": True}, timeout=5)
    wait_until(lambda: not healthy("r0"), what="r0 ejected")
    assert {served(client) for _ in range(4)} == {"r1"}
    httpx.post(sims[0].url + "/sim/faults", json={"reset": True}, timeout=5)
    wait_until(lambda: healthy("r0"), what="r0 restored")

    # The process gone: out; a new one on the same port: back, and serving.
    port = sims[0].port
    sims[0].stop()
    wait_until(lambda: not healthy("r0"), what="r0 ejected once stopped")
    assert {served(client) for _ in range(4)} == {"r1"}
    spawn(serve_argv(), port=port)
    # Each failed check while it was gone doubled the backoff (at most 30 s).
    wait_until(lambda: healthy("r0"), timeout=45, what="r0 restored once restarted")
    assert {served(client) for _ in range(4)} == {"r0", "r1"}


def served(client: openai.OpenAI) -> str:
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=MESSAGES, max_tokens=2
    )
    raw.parse()
    return raw.headers["x-turnout-replica"]
