"""The gateway as bench/gateway_bench.py runs it (`gateway_env`) has nothing turned off:
routing by its strategy, metrics, the JSON log line per request, the metrics poller and
health checks are all at work. The bench's speed figures are only worth that much."""

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.gateway.conftest import Fake, admin_replicas, wait_until
from tests.procs import Proc, bin_path, free_port

BENCH = Path(__file__).resolve().parents[2] / "bench" / "gateway_bench.py"


def bench_gateway_env(upstream: str, port: int) -> dict[str, str]:
    spec = importlib.util.spec_from_file_location("gateway_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    env: dict[str, str] = module.gateway_env(upstream, port)
    return env


def test_the_bench_configuration_has_everything_on(
    fake: Callable[..., Fake], spawn: Callable[..., Proc], chat: dict[str, Any]
) -> None:
    replica = fake("r0")
    port = free_port()
    gw = spawn([bin_path("gateway")], port=port, env=bench_gateway_env(replica.url, port))

    for stream in (False, True, False):
        response = httpx.post(
            gw.url + "/v1/chat/completions", json={**chat, "stream": stream}, timeout=10
        )
        assert response.status_code == 200
        assert response.headers["x-turnout-replica"] == replica.url.removeprefix("http://")

    metrics = httpx.get(gw.url + "/metrics", timeout=5).text
    assert 'strategy="round_robin"' in metrics
    assert any(
        line.startswith("turnout_requests_total{") and line.endswith(" 3.0")
        for line in metrics.splitlines()
    ), metrics

    def log_events() -> list[str]:
        lines = [line for line in gw.output().splitlines() if line.startswith("{")]
        return [json.loads(line)["event"] for line in lines]

    wait_until(lambda: log_events().count("request_finished") == 3, 5, "a log line each")
    # The poller scrapes the replica's /metrics (its figures reach the pool).
    wait_until(lambda: admin_replicas(gw)["replicas"][0]["running"] is not None, 10, "scraped")
    # Health checks run: a replica that fails its /health is ejected.
    replica.configure(health_status=500)
    wait_until(lambda: not admin_replicas(gw)["replicas"][0]["healthy"], 10, "ejected")
