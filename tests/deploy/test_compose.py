"""The compose stacks parse, pin their images, and configure the gateway with real settings."""

from typing import Any

import pytest
import yaml

from gateway.settings import GatewaySettings
from routers.registry import available
from tests.deploy.files import (
    COMPOSE,
    STACKS,
    env_example_names,
    environment,
    gateway_services,
    load_compose,
    replica_addresses,
    variables,
    with_defaults,
)

REFERENCE_LAYOUT = {  # service: (model, GPUs); the reference layout's six replicas on eight GPUs
    "llama-0": ("meta-llama/Llama-3.1-8B-Instruct", ["0"]),
    "llama-1": ("meta-llama/Llama-3.1-8B-Instruct", ["1"]),
    "qwen-0": ("Qwen/Qwen2.5-7B-Instruct", ["2"]),
    "qwen-1": ("Qwen/Qwen2.5-7B-Instruct", ["3"]),
    "mixtral-0": ("mistralai/Mixtral-8x7B-Instruct-v0.1", ["4", "5"]),
    "mixtral-1": ("mistralai/Mixtral-8x7B-Instruct-v0.1", ["6", "7"]),
}
GATEWAYS = {  # stack: {service: (container port, strategy)}
    "baseline": {"gateway": (8080, "round_robin")},
    "managed": {"gateway": (8081, "queue_depth")},
    "sim": {"gateway-baseline": (8080, "round_robin"), "gateway-managed": (8081, "queue_depth")},
}


def unknown_gateway_variables(env: dict[str, str | None]) -> list[str]:
    fields = GatewaySettings.model_fields
    return sorted(
        key
        for key in env
        if key.startswith("GATEWAY_") and key.removeprefix("GATEWAY_").lower() not in fields
    )


def gpu_ids(service: dict[str, Any]) -> list[str]:
    devices = service.get("deploy", {}).get("resources", {}).get("reservations", {})
    return [gpu for device in devices.get("devices", []) for gpu in device["device_ids"]]


def command(service: dict[str, Any]) -> list[str]:
    return [with_defaults(str(arg)) for arg in service.get("command", [])]


@pytest.mark.parametrize("stack", STACKS)
def test_compose_file_parses_with_services(stack: str) -> None:
    compose = load_compose(stack)
    assert compose["name"] == f"turnout-{stack}"
    assert compose["services"]
    for name, service in compose["services"].items():
        assert isinstance(service, dict), name
        assert "image" in service, f"{stack}: service {name} has no image"


@pytest.mark.parametrize("stack", STACKS)
def test_every_image_is_pinned(stack: str) -> None:
    for name, service in load_compose(stack)["services"].items():
        image = with_defaults(service["image"])
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{stack}/{name}: {image} has no tag"
        assert tag and tag != "latest", f"{stack}/{name}: {image} is not pinned"
        assert any(ch.isdigit() for ch in tag), f"{stack}/{name}: {image} tag is not a version"


def test_unknown_gateway_variable_is_caught() -> None:
    env = {"GATEWAY_STRATEGY": "round_robin", "GATEWAY_STRATEGYY": "x", "HF_TOKEN": "t"}
    assert unknown_gateway_variables(env) == ["GATEWAY_STRATEGYY"]


@pytest.mark.parametrize("stack", STACKS)
def test_gateway_variables_are_real_settings(stack: str) -> None:
    compose = load_compose(stack)
    for name, service in compose["services"].items():
        assert unknown_gateway_variables(environment(service)) == [], f"{stack}/{name}"


@pytest.mark.parametrize("stack", STACKS)
def test_gateway_environment_is_valid_and_as_designed(stack: str) -> None:
    compose = load_compose(stack)
    services = gateway_services(compose)
    assert set(services) == set(GATEWAYS[stack])
    for name, service in services.items():
        values = {
            key.removeprefix("GATEWAY_").lower(): with_defaults(value)
            for key, value in environment(service).items()
            if key.startswith("GATEWAY_") and value is not None
        }
        settings = GatewaySettings(**values)
        port, strategy = GATEWAYS[stack][name]
        assert (settings.host, settings.port, settings.strategy) == ("0.0.0.0", port, strategy)
        assert settings.strategy in available()
        assert len(settings.replicas) == 6
        assert service["init"] is True
        published = [with_defaults(mapping) for mapping in service["ports"]]
        assert [mapping.split(":")[-1] for mapping in published] == [str(port)]
        assert environment(service)["TURNOUT_HEALTH_URL"] == f"http://127.0.0.1:{port}/health"
        hosts = {address.split(":")[0] for address in replica_addresses(service)}
        assert hosts <= set(compose["services"]), f"{name} points at unknown services {hosts}"
        for host in hosts:
            assert service["depends_on"][host] == {"condition": "service_healthy"}


@pytest.mark.parametrize("stack", ["baseline", "managed"])
def test_gpu_stack_follows_the_reference_layout(stack: str) -> None:
    services = load_compose(stack)["services"]
    for name, (model, gpus) in REFERENCE_LAYOUT.items():
        service = services[name]
        argv = command(service)
        assert model in argv, f"{stack}/{name} serves {argv}"
        assert gpu_ids(service) == gpus, f"{stack}/{name}"
        assert ("--tensor-parallel-size=2" in argv) == (len(gpus) == 2), f"{stack}/{name}"
        assert "--port=8000" in argv
        assert "hf-cache:/root/.cache/huggingface" in service["volumes"]
        assert (
            environment(service)["HF_TOKEN"]
            == "${HF_TOKEN:?set HF_TOKEN in .env (see .env.example)}"
        )
        health = " ".join(service["healthcheck"]["test"])
        assert "http://127.0.0.1:8000/health" in health
    replicas = replica_addresses(services["gateway"])
    assert replicas == [f"{name}:8000" for name in REFERENCE_LAYOUT]


def test_baseline_runs_stock_vllm_with_prefix_caching() -> None:
    services = load_compose("baseline")["services"]
    for name in REFERENCE_LAYOUT:
        service = services[name]
        assert with_defaults(service["image"]).startswith("vllm/vllm-openai:v")
        argv = command(service)
        assert argv[0] == REFERENCE_LAYOUT[name][0], "the image's entrypoint is vllm serve"
        assert "--enable-prefix-caching" in argv


def test_managed_runs_kvcached_without_prefix_caching_or_memory_fraction() -> None:
    services = load_compose("managed")["services"]
    for name in REFERENCE_LAYOUT:
        service = services[name]
        assert with_defaults(service["image"]).startswith("ghcr.io/ovg-project/kvcached-vllm:")
        argv = command(service)
        assert argv[:2] == ["vllm", "serve"], "the KVCached image's entrypoint is a shell"
        assert "--no-enable-prefix-caching" in argv
        assert not any(arg.startswith("--gpu-memory-utilization") for arg in argv)
        assert environment(service)["ENABLE_KVCACHED"] == "true"


def test_sim_stack_needs_no_gpu() -> None:
    services = load_compose("sim")["services"]
    for name, service in services.items():
        assert gpu_ids(service) == [], name
        assert "runtime" not in service, name
    assert command(services["sim-baseline"])[:3] == ["vllm-sim", "fleet", "baseline"]
    assert command(services["sim-managed"])[:3] == ["vllm-sim", "fleet", "managed"]


@pytest.mark.parametrize("stack", STACKS)
def test_observability_is_an_opt_in_profile(stack: str) -> None:
    services = load_compose(stack)["services"]
    assert services["prometheus"]["profiles"] == ["observability"]
    assert services["grafana"]["profiles"] == ["observability"]
    others = [name for name in services if name not in ("prometheus", "grafana")]
    assert all("profiles" not in services[name] for name in others)
    mounted = services["prometheus"]["volumes"][0].split(":")[0]
    assert mounted == f"./prometheus/{stack}.yml"
    assert (COMPOSE / mounted).is_file()
    for volume in services["grafana"]["volumes"]:
        assert (COMPOSE / volume.split(":")[0]).is_dir(), volume


@pytest.mark.parametrize("stack", STACKS)
def test_prometheus_scrapes_the_gateways_and_every_replica(stack: str) -> None:
    compose = load_compose(stack)
    config = yaml.safe_load((COMPOSE / "prometheus" / f"{stack}.yml").read_text())
    jobs = {job["job_name"]: job["static_configs"] for job in config["scrape_configs"]}
    scraped: dict[tuple[str, str], set[str]] = {}
    for job, groups in jobs.items():
        for group in groups:
            scraped.setdefault((job, group["labels"]["env"]), set()).update(group["targets"])
    expected: dict[tuple[str, str], set[str]] = {}
    for name, service in gateway_services(compose).items():
        env = "managed" if GATEWAYS[stack][name][1] == "queue_depth" else "baseline"
        expected[("gateway", env)] = {f"{name}:{GATEWAYS[stack][name][0]}"}
        expected[("vllm", env)] = set(replica_addresses(service))
    assert scraped == expected


def test_every_compose_variable_is_documented_in_env_example() -> None:
    used: set[str] = set()
    for stack in STACKS:
        used |= variables((COMPOSE / f"{stack}.yaml").read_text())
        passed_through = load_compose(stack)["services"].values()
        used |= {
            key
            for service in passed_through
            for key, v in environment(service).items()
            if v is None
        }
    missing = used - env_example_names()
    assert not missing, f".env.example does not document {sorted(missing)}"


def test_env_example_documents_only_variables_in_use() -> None:
    used: set[str] = set()
    for stack in STACKS:
        used |= variables((COMPOSE / f"{stack}.yaml").read_text())
        used |= {
            key
            for service in load_compose(stack)["services"].values()
            for key in environment(service)
        }
    stale = env_example_names() - used
    assert not stale, f".env.example documents variables no compose file reads: {sorted(stale)}"
