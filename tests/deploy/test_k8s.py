"""deploy/k8s/: every object validates against the Kubernetes JSON schemas (strict: no
unknown field), and the pieces fit together the way the gateway needs them to."""

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.settings import GatewaySettings
from tests.deploy.files import ROOT

K8S = ROOT / "deploy" / "k8s"
# Kinds of the Prometheus Operator's CRDs: no schema in kubernetes-validate; checked below.
CRD_KINDS = {"PodMonitor"}


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def objects() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        found += [(path.name, doc) for doc in documents(path)]
    return found


def one(kind: str, name: str) -> dict[str, Any]:
    matches = [
        doc for _, doc in objects() if doc["kind"] == kind and doc["metadata"]["name"] == name
    ]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} objects"
    return matches[0]


@pytest.mark.parametrize(
    "name,doc",
    [pytest.param(n, d, id=f"{n}:{d['kind']}") for n, d in objects() if d["kind"] not in CRD_KINDS],
)
def test_every_object_validates_strictly(name: str, doc: dict[str, Any]) -> None:
    version = kubernetes_validate.latest_version()
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{name}: {doc['kind']} {where}: {exc.message}")


def test_the_validator_catches_a_misspelt_field() -> None:
    deployment = one("Deployment", "turnout-gateway")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def test_kustomization_lists_every_file_once() -> None:
    listed = documents(K8S / "kustomization.yaml")[0]["resources"]
    on_disk = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == on_disk and len(set(listed)) == len(listed)


def test_the_gateway_settings_are_valid_and_point_at_the_replicas_service() -> None:
    config = one("ConfigMap", "turnout-gateway")["data"]
    known = {f"GATEWAY_{field.upper()}" for field in GatewaySettings.model_fields}
    assert set(config) <= known, f"unknown settings: {sorted(set(config) - known)}"
    assert "GATEWAY_ADMIN_KEY" not in config  # a Secret's, not a ConfigMap's
    settings = GatewaySettings(**{k.removeprefix("GATEWAY_").lower(): v for k, v in config.items()})
    assert settings.discovery == "k8s" and settings.host == "0.0.0.0"
    # Two gateways: the strategy the several-gateways study found not to herd.
    assert settings.strategy == "p2c"
    service = one("Service", settings.k8s_service or "")
    assert settings.k8s_port in {port["name"] for port in service["spec"]["ports"]}
    # The Service selects the example replicas' pods.
    replicas = one("Deployment", "vllm-llama")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= replicas.items()


def test_the_gateway_may_watch_endpoint_slices_and_nothing_more() -> None:
    pod = one("Deployment", "turnout-gateway")["spec"]["template"]["spec"]
    account = pod["serviceAccountName"]
    one("ServiceAccount", account)
    binding = one("RoleBinding", account)
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account, "namespace": "turnout"}
    ]
    role = one(binding["roleRef"]["kind"], binding["roleRef"]["name"])
    assert role["rules"] == [
        {
            "apiGroups": ["discovery.k8s.io"],
            "resources": ["endpointslices"],
            "verbs": ["get", "list", "watch"],
        }
    ]


def test_probes_selectors_and_monitor_match_the_gateway_pods() -> None:
    deployment = one("Deployment", "turnout-gateway")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/metrics"
    assert container["resources"]["requests"].keys() >= {"cpu", "memory"}
    ports = {port["name"] for port in container["ports"]}
    secret = container["env"][0]["valueFrom"]["secretKeyRef"]
    assert container["env"][0]["name"] == "GATEWAY_ADMIN_KEY" and secret["key"]
    for kind in ("Service", "PodDisruptionBudget"):
        spec = one(kind, "turnout-gateway")["spec"]
        selector = spec["selector"].get("matchLabels", spec["selector"])
        assert selector.items() <= labels.items(), kind
    monitor = one("PodMonitor", "turnout-gateway")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in ports and endpoint["path"] == "/metrics"


def test_the_example_replicas_request_gpus_and_are_ready_when_vllm_is() -> None:
    pod = one("Deployment", "vllm-llama")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
