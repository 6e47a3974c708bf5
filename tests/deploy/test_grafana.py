"""Grafana: provisioning points at the stack's Prometheus; the dashboard queries real metrics."""

from typing import Any

import httpx
import pytest
import yaml

from tests.deploy.conftest import LiveGateway
from tests.deploy.files import (
    COMPOSE,
    FIXTURE_VLLM_METRICS,
    STACKS,
    dashboard_expressions,
    exported_names,
    load_dashboard,
    queried_names,
)

GRAFANA = COMPOSE / "grafana"
DASHBOARD: dict[str, Any] = load_dashboard()
NAMES = set().union(*(queried_names(expr) for expr in dashboard_expressions()))


def test_datasource_is_the_stacks_prometheus() -> None:
    provisioning = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    (source,) = provisioning["datasources"]
    assert (source["type"], source["url"]) == ("prometheus", "http://prometheus:9090")
    uids = {panel["datasource"]["uid"] for panel in DASHBOARD["panels"]}
    assert uids == {source["uid"]}


def test_dashboard_provider_loads_the_mounted_folder() -> None:
    provisioning = yaml.safe_load((GRAFANA / "provisioning/dashboards/turnout.yml").read_text())
    (provider,) = provisioning["providers"]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    grafana = yaml.safe_load((COMPOSE / "sim.yaml").read_text())["services"]["grafana"]
    assert "./grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana["volumes"]


def test_dashboard_is_well_formed() -> None:
    assert DASHBOARD["uid"] and DASHBOARD["title"]
    ids = [panel["id"] for panel in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    for panel in DASHBOARD["panels"]:
        assert panel["type"] == "timeseries"
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}


def test_every_panel_has_its_other_environment_beside_it() -> None:
    by_position = {(p["gridPos"]["x"], p["gridPos"]["y"]): p for p in DASHBOARD["panels"]}
    for (x, y), left in by_position.items():
        if x != 0:
            continue
        right = by_position[(12, y)]
        assert left["title"].startswith("baseline: ") and right["title"].startswith("$right: ")
        assert left["title"].removeprefix("baseline: ") == right["title"].removeprefix("$right: ")
        for a, b in zip(left["targets"], right["targets"], strict=True):
            assert a["expr"].replace('env="baseline"', 'env="$right"') == b["expr"]


def test_the_right_column_offers_what_the_stack_scrapes_besides_baseline() -> None:
    """managed in managed.yaml and sim.yaml, managed-prefix in managed-prefix.yaml, ..."""
    (variable,) = DASHBOARD["templating"]["list"]
    assert variable["name"] == "right" and variable["type"] == "query"
    assert variable["query"] == 'label_values(up{env!="baseline"}, env)'
    assert variable["refresh"] == 1  # on load: each stack's Prometheus has its own envs
    assert variable["datasource"]["uid"] == "prometheus"
    envs = set()
    for stack in STACKS:
        config = yaml.safe_load((COMPOSE / "prometheus" / f"{stack}.yml").read_text())
        for job in config["scrape_configs"]:
            envs |= {group["labels"]["env"] for group in job["static_configs"]}
    assert envs == {"baseline", "managed", "managed-prefix", "managed-colocated"}


@pytest.mark.parametrize(
    "name",
    [
        "turnout_requests_total",
        "turnout_in_flight",
        "turnout_time_to_first_byte_seconds_bucket",
        "vllm:num_requests_waiting",
        "vllm:num_requests_running",
        "vllm:kv_cache_usage_perc",
    ],
)
def test_dashboard_shows_what_the_issue_asks_for(name: str) -> None:
    assert name in NAMES


def test_vllm_names_are_ones_vllm_exports() -> None:
    exported = exported_names(FIXTURE_VLLM_METRICS.read_text())
    queried = {name for name in NAMES if name.startswith("vllm:")}
    assert queried
    assert queried <= exported, f"not exported by vLLM 0.32.0: {sorted(queried - exported)}"


def test_name_check_catches_a_misspelling() -> None:
    exported = exported_names(FIXTURE_VLLM_METRICS.read_text())
    assert "vllm:gpu_cache_usage_percent" not in exported
    assert "vllm:time_to_first_token_seconds_bucket" in exported


def test_gateway_names_are_ones_the_gateway_exports(live_gateway: LiveGateway) -> None:
    exported = exported_names(live_gateway.metrics())
    queried = {name for name in NAMES if name.startswith("turnout_")}
    assert queried
    assert queried <= exported, f"not exported by the gateway: {sorted(queried - exported)}"


def test_vllm_names_are_ones_the_simulator_exports(live_gateway: LiveGateway) -> None:
    text = httpx.get(live_gateway.replicas[0].url + "/metrics", timeout=5.0).text
    queried = {name for name in NAMES if name.startswith("vllm:")}
    missing = queried - exported_names(text)
    assert not missing, f"not exported by vllm-sim: {sorted(missing)}"
