"""/v1/models, /health and /metrics of a running gateway."""

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.gateway.conftest import Fake, replicas_file, wait_until
from tests.procs import Proc


def test_models_are_the_union_over_healthy_replicas(
    fake: Callable[..., Fake], gateway: Callable[..., Proc], tmp_path: Path
) -> None:
    # The fake gives its i-th model max_model_len 4096 * (i + 1).
    a = fake("a", models=["m1", "m2"])
    b = fake("b", models=["m2", "m1"])
    c = fake("c", models=["m3"])
    entries = [{"url": f.url, "name": f.name} for f in (a, b, c)]
    gw = gateway(replicas_file=replicas_file(tmp_path, entries), health_interval=0.2)
    body = httpx.get(gw.url + "/v1/models", timeout=5).json()
    assert body["object"] == "list"
    # Each model once; where replicas disagree, the smallest max_model_len holds for all.
    assert [(m["id"], m["max_model_len"]) for m in body["data"]] == [
        ("m1", 4096),
        ("m2", 4096),
        ("m3", 4096),
    ]
    c.configure(health_status=503)
    wait_until(
        lambda: (
            [m["id"] for m in httpx.get(gw.url + "/v1/models", timeout=5).json()["data"]]
            == ["m1", "m2"]
        ),
        5,
        "m3 leaves with its only replica",
    )
    health = httpx.get(gw.url + "/health", timeout=5)
    assert health.status_code == 200
    assert health.json()["healthy_replicas"] == 2


def test_health_is_503_when_no_replica_is_healthy(
    fake: Callable[..., Fake], gateway: Callable[..., Proc]
) -> None:
    replica = fake("a")
    gw = gateway(replicas=[replica.url], health_interval=0.2)
    assert httpx.get(gw.url + "/health", timeout=5).status_code == 200
    replica.configure(health_status=500)
    wait_until(lambda: httpx.get(gw.url + "/health", timeout=5).status_code == 503, 5)
    replica.configure(health_status=200)
    wait_until(lambda: httpx.get(gw.url + "/health", timeout=5).status_code == 200, 10)


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian: prometheus) missing"
)
def test_metrics_pass_promtool(fake: Callable[..., Fake], gateway: Callable[..., Proc]) -> None:
    replica = fake("a")
    gw = gateway(replicas=[replica.url])
    for body in ({"model": "m1"}, {"model": "m1", "stream": True}, {"model": "zz"}):
        httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=5)
    text = httpx.get(gw.url + "/metrics", timeout=5).text
    for name in (
        "turnout_requests_total",
        "turnout_in_flight",
        "turnout_time_to_first_byte_seconds_bucket",
        "turnout_request_duration_seconds_bucket",
        "turnout_replica_healthy",
        "turnout_replica_metrics_age_seconds",
    ):
        assert f"\n{name}{{" in text
    assert "# TYPE turnout_retries_total counter" in text
    assert "# TYPE turnout_upstream_errors_total counter" in text
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_response_carries_the_gateway_headers(
    fake: Callable[..., Fake], gateway: Callable[..., Proc]
) -> None:
    replica = fake("a")
    gw = gateway(replicas=[replica.url])
    for path in ("/v1/models", "/health", "/metrics", "/admin/replicas", "/nowhere"):
        response = httpx.get(gw.url + path, headers={"x-request-id": "abc-1"}, timeout=5)
        assert response.headers.get_list("x-request-id") == ["abc-1"], path
        assert response.headers.get_list("x-turnout-replica") == ["none"], path
    generated = httpx.get(gw.url + "/health", timeout=5).headers["x-request-id"]
    assert len(generated) == 32
