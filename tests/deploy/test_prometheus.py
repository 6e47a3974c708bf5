"""Prometheus: the shipped configs pass promtool, and a real server scrapes a real gateway."""

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.conftest import LiveGateway, prometheus_tool
from tests.deploy.files import COMPOSE, STACKS, dashboard_expressions, load_dashboard
from tests.procs import Proc, free_port, start


@pytest.mark.parametrize("stack", STACKS)
def test_shipped_config_passes_promtool(stack: str) -> None:
    promtool = prometheus_tool("promtool")
    config = COMPOSE / "prometheus" / f"{stack}.yml"
    result = subprocess.run(
        [promtool, "check", "config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_rejects_a_broken_config(tmp_path: Path) -> None:
    promtool = prometheus_tool("promtool")
    broken = tmp_path / "prometheus.yml"
    broken.write_text("scrape_configs:\n  - job_name: gateway\n    scrape_interval: soon\n")
    result = subprocess.run(
        [promtool, "check", "config", str(broken)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0


def test_gateway_metrics_pass_promtool(live_gateway: LiveGateway) -> None:
    promtool = prometheus_tool("promtool")
    text = live_gateway.metrics()
    assert "turnout_requests_total{" in text
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def requests_counted(text: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "turnout_requests_total"
    )


def scrape_config(gateway: LiveGateway) -> dict[str, Any]:
    """compose/prometheus/sim.yml with the baseline targets pointed at this test's processes."""
    config = yaml.safe_load((COMPOSE / "prometheus" / "sim.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    addresses = {
        "gateway": [gateway.url.removeprefix("http://")],
        "vllm": [replica.url.removeprefix("http://") for replica in gateway.replicas],
    }
    for job in config["scrape_configs"]:
        job["static_configs"] = [
            {**group, "targets": addresses[job["job_name"]]}
            for group in job["static_configs"]
            if group["labels"]["env"] == "baseline"
        ]
    return config


def query(prometheus: Proc, promql: str) -> list[dict[str, Any]]:
    response = httpx.get(prometheus.url + "/api/v1/query", params={"query": promql}, timeout=5.0)
    body = response.json()
    assert body["status"] == "success", f"{promql}: {body}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def wait_for(prometheus: Proc, promql: str, timeout: float = 30.0) -> list[dict[str, Any]]:
    """The query's result once it is not empty (Prometheus scrapes every second here)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = query(prometheus, promql)
        if result:
            return result
        time.sleep(0.25)
    raise TimeoutError(f"Prometheus returned nothing for {promql} within {timeout}s")


@pytest.fixture(scope="module")
def prometheus(
    live_gateway: LiveGateway, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proc]:
    binary = prometheus_tool("prometheus")
    workdir = tmp_path_factory.mktemp("prometheus")
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(live_gateway)))
    port = free_port()
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
    ]
    proc = start(argv, port=port, ready_path="/-/ready", timeout=30.0)
    yield proc
    proc.stop()


def test_prometheus_reads_the_gateway_request_counter(
    live_gateway: LiveGateway, prometheus: Proc
) -> None:
    expected = requests_counted(live_gateway.metrics())
    assert expected >= live_gateway.sent
    promql = 'sum(turnout_requests_total{job="gateway", env="baseline"})'
    series = wait_for(prometheus, promql)
    deadline = time.monotonic() + 15.0
    while float(series[0]["value"][1]) < expected and time.monotonic() < deadline:
        time.sleep(0.25)
        series = query(prometheus, promql)
    assert float(series[0]["value"][1]) == expected


def test_replica_and_gateway_series_share_the_replica_label(
    live_gateway: LiveGateway, prometheus: Proc
) -> None:
    replicas = {replica.url.removeprefix("http://") for replica in live_gateway.replicas}
    up = wait_for(prometheus, 'up{job="vllm", env="baseline"} == 1')
    deadline = time.monotonic() + 15.0
    while len(up) < len(replicas) and time.monotonic() < deadline:
        time.sleep(0.25)
        up = query(prometheus, 'up{job="vllm", env="baseline"} == 1')
    assert {series["metric"]["replica"] for series in up} == replicas
    waiting = wait_for(prometheus, "sum by (replica) (vllm:num_requests_waiting)")
    assert {series["metric"]["replica"] for series in waiting} == replicas
    routed = wait_for(prometheus, "sum by (replica) (turnout_requests_total)")
    assert {series["metric"]["replica"] for series in routed} <= replicas


def test_every_dashboard_query_is_valid_promql(prometheus: Proc) -> None:
    for expr in dashboard_expressions():
        query(prometheus, expr.replace("$__rate_interval", "15s").replace("$right", "managed"))


def test_the_right_column_variable_lists_the_environments_scraped(prometheus: Proc) -> None:
    """Grafana's label_values(up{env!="baseline"}, env) is this label query in Prometheus:
    here only baseline is scraped, so it offers nothing and the unfiltered one baseline."""
    (variable,) = load_dashboard()["templating"]["list"]
    assert variable["query"] == 'label_values(up{env!="baseline"}, env)'
    wait_for(prometheus, 'up{env="baseline"}')

    def env_values(match: str) -> list[str]:
        url = prometheus.url + "/api/v1/label/env/values"
        body = httpx.get(url, params={"match[]": match}, timeout=5.0).json()
        assert body["status"] == "success", body
        values: list[str] = body["data"]
        return values

    assert env_values("up") == ["baseline"]
    assert env_values('up{env!="baseline"}') == []
