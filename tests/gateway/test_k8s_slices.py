"""Which endpoints of a Service's EndpointSlices are replicas (gateway/k8s_discovery.py)."""

from typing import Any

import pytest
from lightkube.resources.discovery_v1 import EndpointSlice

from gateway import k8s_discovery
from gateway.k8s_discovery import own_namespace, replicas_from_slices
from gateway.replicas_file import ConfigError


def piece(endpoints: list[dict[str, Any]], ports: list[dict[str, Any]]) -> EndpointSlice:
    return EndpointSlice.from_dict(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "s", "labels": {"kubernetes.io/service-name": "vllm"}},
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": ports,
        }
    )


def endpoint(address: str, pod: str | None = None, **conditions: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"addresses": [address]}
    if conditions:
        entry["conditions"] = conditions
    if pod is not None:
        entry["targetRef"] = {"kind": "Pod", "name": pod, "namespace": "ns"}
    return entry


PORTS = [{"name": "metrics", "port": 9000}, {"name": "http", "port": 8000}]


def test_ready_endpoints_are_replicas_named_after_their_pods() -> None:
    slices = [
        piece(
            [
                endpoint("10.0.0.2", "vllm-1", ready=True),
                endpoint("10.0.0.1", "vllm-0"),  # no conditions: ready (nil means true)
                endpoint("10.0.0.3", "vllm-2", ready=False, terminating=True),
                endpoint("10.0.0.4", "vllm-3", ready=False, serving=True),
            ],
            PORTS,
        ),
        piece([endpoint("fd00::5", None, ready=True)], PORTS),
    ]
    found = replicas_from_slices(slices, "http")
    assert [(r.name, r.url) for r in found] == [
        ("fd00::5:8000", "http://[fd00::5]:8000"),
        ("vllm-0", "http://10.0.0.1:8000"),
        ("vllm-1", "http://10.0.0.2:8000"),
    ]
    # Without a port name the first port is used; with one the slice lacks, none.
    assert {r.url for r in replicas_from_slices(slices[:1], None)} == {
        "http://10.0.0.1:9000",
        "http://10.0.0.2:9000",
    }
    assert replicas_from_slices(slices, "grpc") == []


def test_the_namespace_is_the_given_one_else_the_pods_own(tmp_path: Any, monkeypatch: Any) -> None:
    assert own_namespace("given") == "given"
    mounted = tmp_path / "namespace"
    monkeypatch.setattr(k8s_discovery, "NAMESPACE_FILE", mounted)
    assert own_namespace(None) == "default"
    mounted.write_text("serving\n")
    assert own_namespace(None) == "serving"


def test_no_credentials_is_a_one_line_config_error(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="GATEWAY_DISCOVERY=k8s: no Kubernetes credentials"):
        k8s_discovery.load_config()
