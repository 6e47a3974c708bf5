"""The compose stacks parse, pin their images, and configure the gateway with real settings."""

import re
from typing import Any

import pytest
import yaml

from gateway.settings import GatewaySettings
from routers.registry import available
from tests.deploy.files import (
    COMPOSE,
    GPU_STACKS,
    STACKS,
    env_example_names,
    environment,
    gateway_services,
    load_compose,
    replica_addresses,
    variables,
    with_defaults,
)

LLAMA, QWEN = "meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-7B-Instruct"
REFERENCE_LAYOUT = {  # service: (model, GPUs); the reference layout's six replicas on eight GPUs
    "llama-0": (LLAMA, ["0"]),
    "llama-1": (LLAMA, ["1"]),
    "qwen-0": (QWEN, ["2"]),
    "qwen-1": (QWEN, ["3"]),
    "mixtral-0": ("mistralai/Mixtral-8x7B-Instruct-v0.1", ["4", "5"]),
    "mixtral-1": ("mistralai/Mixtral-8x7B-Instruct-v0.1", ["6", "7"]),
}
# The colocated layout (loadtest/sim/layout.py): Llama and Qwen on each of GPUs 0-3.
COLOCATED_LAYOUT = {
    f"{name}-{gpu}": (model, [str(gpu)])
    for gpu in range(4)
    for name, model in (("llama", LLAMA), ("qwen", QWEN))
}
LAYOUTS = {
    "baseline": REFERENCE_LAYOUT,
    "managed": REFERENCE_LAYOUT,
    "managed-prefix": REFERENCE_LAYOUT,
    "managed-colocated": COLOCATED_LAYOUT,
}
GATEWAYS = {  # stack: {service: (container port, strategy, env label in Prometheus)}
    "baseline": {"gateway": (8080, "round_robin", "baseline")},
    "managed": {"gateway": (8081, "least_work", "managed")},
    "managed-prefix": {"gateway": (8082, "least_work", "managed-prefix")},
    "managed-colocated": {"gateway": (8083, "round_robin", "managed-colocated")},
    "sim": {
        "gateway-baseline": (8080, "round_robin", "baseline"),
        "gateway-managed": (8081, "least_work", "managed"),
        "gateway-managed-prefix": (8082, "least_work", "managed-prefix"),
        "gateway-managed-colocated": (8083, "round_robin", "managed-colocated"),
    },
}
REPLICAS = {  # gateway service: how many replicas it fronts
    "gateway-managed-colocated": len(COLOCATED_LAYOUT),
    **dict.fromkeys(["gateway-baseline", "gateway-managed", "gateway-managed-prefix"], 6),
}
KVCACHED = "ghcr.io/ovg-project/kvcached-vllm"
# Images whose digest no public source gave: a required variable stands in for the digest until
# scripts/refresh-digests.py resolves the tag (README, "Pinned images").
NOT_YET_PINNED = {KVCACHED: "KVCACHED_VLLM_DIGEST"}
DIGEST = re.compile(r"(?P<repo>[a-z0-9][a-z0-9./-]*):(?P<tag>[\w][\w.-]*)@sha256:[0-9a-f]{64}")
PLACEHOLDER = re.compile(
    r"(?P<repo>[a-z0-9][a-z0-9./-]*):(?P<tag>[\w][\w.-]*)@\$\{(?P<var>[A-Z0-9_]+):\?(?P<msg>[^}]*)\}"
)
ADMIN_KEY = {"GATEWAY_ADMIN_KEY": "test-admin-key"}
OBSERVABILITY = ("prometheus", "grafana")


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


def pulled_images(stack: str) -> dict[str, str]:
    """service -> image, for every service whose image is pulled (not built here)."""
    services = load_compose(stack)["services"]
    return {name: s["image"] for name, s in services.items() if "build" not in s}


@pytest.mark.parametrize("stack", STACKS)
def test_compose_file_parses_with_services(stack: str) -> None:
    compose = load_compose(stack)
    assert compose["name"] == f"turnout-{stack}"
    assert compose["services"]
    for name, service in compose["services"].items():
        assert isinstance(service, dict), name
        assert "image" in service, f"{stack}: service {name} has no image"


# -- pinned images ------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_every_pulled_image_is_pinned_by_tag_and_digest(stack: str) -> None:
    for name, image in pulled_images(stack).items():
        pinned = DIGEST.fullmatch(image) or PLACEHOLDER.fullmatch(image)
        assert pinned, f"{stack}/{name}: {image} is not repository:tag@digest"
        assert pinned["tag"] != "latest" and re.search(r"\d", pinned["tag"]), image
        placeholder = PLACEHOLDER.fullmatch(image)
        if placeholder:
            assert NOT_YET_PINNED.get(placeholder["repo"]) == placeholder["var"], image
            assert "scripts/refresh-digests.py" in placeholder["msg"]


def test_the_placeholder_check_tells_a_pin_from_a_bare_tag() -> None:
    assert not DIGEST.fullmatch("vllm/vllm-openai:v0.30.0")
    assert not DIGEST.fullmatch("vllm/vllm-openai@sha256:" + "0" * 64)  # a digest, no tag
    assert not PLACEHOLDER.fullmatch("vllm/vllm-openai:v0.30.0@${DIGEST:-sha256:0}")
    assert DIGEST.fullmatch("prom/prometheus:v2.55.1@sha256:" + "a" * 64)


def test_built_images_are_the_project_image() -> None:
    for stack in STACKS:
        for name, service in load_compose(stack)["services"].items():
            if "build" in service:
                assert service["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
                assert with_defaults(service["image"]) == "turnout:0.1.0", f"{stack}/{name}"


def test_one_tag_has_one_digest_across_the_stacks() -> None:
    seen: dict[str, set[str]] = {}
    for stack in STACKS:
        for image in pulled_images(stack).values():
            reference, _, digest = image.partition("@")
            seen.setdefault(reference, set()).add(digest)
    assert all(len(digests) == 1 for digests in seen.values()), seen


def test_only_the_kvcached_image_waits_for_its_digest() -> None:
    placeholders = {
        match["repo"]
        for stack in STACKS
        for image in pulled_images(stack).values()
        if (match := PLACEHOLDER.fullmatch(image))
    }
    assert placeholders <= set(NOT_YET_PINNED)
    # It is required, so a managed stack cannot start on an unpinned image by accident.
    with pytest.raises(LookupError, match="refresh-digests"):
        with_defaults(pulled_images("managed")["llama-0"])
    pinned = with_defaults(pulled_images("managed")["llama-0"], {"KVCACHED_VLLM_DIGEST": "d"})
    assert pinned == f"{KVCACHED}:kvcached-v0.1.6-vllm-v0.30.0@d"


# -- the gateway ----------------------------------------------------------------------------


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
            key.removeprefix("GATEWAY_").lower(): with_defaults(value, ADMIN_KEY)
            for key, value in environment(service).items()
            if key.startswith("GATEWAY_") and value is not None
        }
        settings = GatewaySettings(**values)
        port, strategy, _ = GATEWAYS[stack][name]
        assert (settings.host, settings.port, settings.strategy) == ("0.0.0.0", port, strategy)
        assert settings.strategy in available()
        assert settings.admin_key_value() == ADMIN_KEY["GATEWAY_ADMIN_KEY"]
        expected = len(LAYOUTS[stack]) if stack in LAYOUTS else REPLICAS[name]
        assert len(settings.replicas) == expected
        assert service["init"] is True
        published = [with_defaults(mapping) for mapping in service["ports"]]
        assert [mapping.split(":")[-1] for mapping in published] == [str(port)]
        assert environment(service)["TURNOUT_HEALTH_URL"] == f"http://127.0.0.1:{port}/health"
        hosts = {address.split(":")[0] for address in replica_addresses(service)}
        assert hosts <= set(compose["services"]), f"{name} points at unknown services {hosts}"
        for host in hosts:
            assert service["depends_on"][host] == {"condition": "service_healthy"}


@pytest.mark.parametrize("stack", STACKS)
def test_every_gateway_requires_an_admin_key(stack: str) -> None:
    """It listens on 0.0.0.0 in its container: /admin must never be open."""
    for name, service in gateway_services(load_compose(stack)).items():
        key = environment(service)["GATEWAY_ADMIN_KEY"]
        assert key is not None and key.startswith("${GATEWAY_ADMIN_KEY:?"), f"{stack}/{name}"
        with pytest.raises(LookupError, match=r"scripts/new-env\.sh"):
            with_defaults(key)


# -- published ports, keys and passwords -----------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_published_ports_bind_to_loopback_unless_opened(stack: str) -> None:
    services = load_compose(stack)["services"]
    publishing = {name for name, service in services.items() if service.get("ports")}
    assert publishing == set(gateway_services(load_compose(stack))) | set(OBSERVABILITY)
    for name in publishing:
        for mapping in services[name]["ports"]:
            assert isinstance(mapping, str), f"{stack}/{name}: use HOST_IP:HOST:CONTAINER"
            host_ip, host_port, container_port = with_defaults(mapping).split(":")
            assert host_ip == "127.0.0.1", f"{stack}/{name} publishes {mapping}"
            assert host_port.isdigit() and container_port.isdigit()
            opened = with_defaults(mapping, {"BIND_ADDRESS": "0.0.0.0"})
            assert opened.startswith("0.0.0.0:"), mapping


@pytest.mark.parametrize("stack", STACKS)
def test_no_password_or_key_has_a_default(stack: str) -> None:
    text = (COMPOSE / f"{stack}.yaml").read_text()
    for name in ("GATEWAY_ADMIN_KEY", "GATEWAY_API_KEYS", "GRAFANA_ADMIN_PASSWORD", "HF_TOKEN"):
        for match in re.finditer(r"\$\{" + name + r"(:?[-?])?([^}]*)\}", text):
            op, arg = match.groups()
            assert op in (None, ":?", "?") or arg == "", f"{stack}: {match[0]} has a default"
    grafana = environment(load_compose(stack)["services"]["grafana"])
    assert with_defaults(grafana["GF_SECURITY_ADMIN_PASSWORD"] or "") == ""


def test_env_example_leaves_the_secrets_empty() -> None:
    text = (COMPOSE.parent / ".env.example").read_text()
    for name in ("GATEWAY_ADMIN_KEY", "GRAFANA_ADMIN_PASSWORD", "HF_TOKEN"):
        assert re.search(rf"^{name}=$", text, flags=re.MULTILINE), name
    assert re.search(r"^BIND_ADDRESS=127\.0\.0\.1$", text, flags=re.MULTILINE)


@pytest.mark.parametrize("stack", STACKS)
def test_opt_in_services_need_no_variable(stack: str) -> None:
    """Compose interpolates every service before it applies profiles, so a required variable
    in prometheus or grafana would stop a plain `up` of the main services."""
    services = load_compose(stack)["services"]
    for name in OBSERVABILITY:
        text = yaml.safe_dump(services[name])
        assert not re.search(r"\$\{[A-Z0-9_]+:?\?", text), f"{stack}/{name}"


# -- observability --------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_observability_is_an_opt_in_profile(stack: str) -> None:
    services = load_compose(stack)["services"]
    assert services["prometheus"]["profiles"] == ["observability"]
    assert services["grafana"]["profiles"] == ["observability"]
    others = [name for name in services if name not in OBSERVABILITY]
    assert all("profiles" not in services[name] for name in others)
    mounted = services["prometheus"]["volumes"][0].split(":")[0]
    assert mounted == f"./prometheus/{stack}.yml"
    assert (COMPOSE / mounted).is_file()
    for volume in services["grafana"]["volumes"]:
        assert (COMPOSE / volume.split(":")[0]).is_dir(), volume


@pytest.mark.parametrize("stack", STACKS)
def test_prometheus_keeps_its_data_in_its_volume(stack: str) -> None:
    """`command` replaces the image's CMD, which set --storage.tsdb.path=/prometheus; without
    it Prometheus writes to its default data/ under the working directory."""
    prometheus = load_compose(stack)["services"]["prometheus"]
    flags = dict(arg.split("=", 1) for arg in prometheus["command"])
    assert flags["--config.file"] == "/etc/prometheus/prometheus.yml"
    assert flags["--storage.tsdb.path"] == "/prometheus"
    assert "prometheus-data:/prometheus" in prometheus["volumes"]
    assert "prometheus-data" in load_compose(stack)["volumes"]


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
        port, _, env = GATEWAYS[stack][name]
        expected[("gateway", env)] = {f"{name}:{port}"}
        expected[("vllm", env)] = set(replica_addresses(service))
    assert scraped == expected


# -- the GPU stacks -------------------------------------------------------------------------


@pytest.mark.parametrize("stack", GPU_STACKS)
def test_gpu_stack_follows_its_layout(stack: str) -> None:
    services = load_compose(stack)["services"]
    layout = LAYOUTS[stack]
    for name, (model, gpus) in layout.items():
        service = services[name]
        argv = command(service)
        assert argv[0] == model, f"{stack}/{name} serves {argv}"
        assert gpu_ids(service) == gpus, f"{stack}/{name}"
        assert ("--tensor-parallel-size=2" in argv) == (len(gpus) == 2), f"{stack}/{name}"
        assert "--port=8000" in argv
        assert (
            environment(service)["HF_TOKEN"]
            == "${HF_TOKEN:?set HF_TOKEN in .env (see .env.example)}"
        )
        health = " ".join(service["healthcheck"]["test"])
        assert "http://127.0.0.1:8000/health" in health
        assert service.get("ipc") != "host"
        assert service["shm_size"]
    replicas = replica_addresses(services["gateway"])
    assert replicas == [f"{name}:8000" for name in layout]


@pytest.mark.parametrize("stack", GPU_STACKS)
def test_replicas_name_their_entrypoint(stack: str) -> None:
    """kvcached's image has ENTRYPOINT [] and CMD bash; vLLM's runs `vllm serve`. Naming it
    keeps `command` (model first) right whichever image, and if an image changes its own."""
    services = load_compose(stack)["services"]
    for name in LAYOUTS[stack]:
        assert services[name]["entrypoint"] == ["vllm", "serve"], f"{stack}/{name}"


@pytest.mark.parametrize("stack", GPU_STACKS)
def test_each_replica_keeps_its_compile_cache(stack: str) -> None:
    compose = load_compose(stack)
    volumes = {}
    for name in LAYOUTS[stack]:
        mounts = dict(reversed(v.split(":")[:2]) for v in compose["services"][name]["volumes"])
        assert mounts["/root/.cache/huggingface"] == "hf-cache"
        volumes[name] = mounts["/root/.cache/vllm"]
        assert volumes[name] in compose["volumes"], f"{stack}/{name}: {volumes[name]} undeclared"
        assert not (compose["volumes"][volumes[name]] or {}).get("external")
    assert len(set(volumes.values())) == len(volumes), "replicas would write one cache at once"


@pytest.mark.parametrize("stack", GPU_STACKS)
def test_the_weights_volume_is_external_and_shared(stack: str) -> None:
    volume = load_compose(stack)["volumes"]["hf-cache"]
    assert volume["external"] is True
    assert with_defaults(volume["name"]) == "turnout-hf-cache"


@pytest.mark.parametrize("stack", GPU_STACKS)
def test_weights_download_once_before_any_replica_starts(stack: str) -> None:
    services = load_compose(stack)["services"]
    download = services["download"]
    assert download["restart"] == "no" and gpu_ids(download) == []
    assert download["image"] == services["llama-0"]["image"], "one image to pull, not two"
    assert "hf-cache:/root/.cache/huggingface" in download["volumes"]
    assert environment(download)["HF_TOKEN"] == environment(services["llama-0"])["HF_TOKEN"]
    assert download["entrypoint"][:2] == ["python3", "-c"]
    assert set(download["command"]) == {model for model, _ in LAYOUTS[stack].values()}
    for name in LAYOUTS[stack]:
        assert services[name]["depends_on"]["download"] == {
            "condition": "service_completed_successfully"
        }


@pytest.mark.parametrize("stack", GPU_STACKS)
def test_health_checks_allow_for_the_first_start(stack: str) -> None:
    """After start_period a failing check makes `up` abort (dependency failed to start)."""
    for name in LAYOUTS[stack]:
        health = load_compose(stack)["services"][name]["healthcheck"]
        minutes = int(health["start_period"].removesuffix("m"))
        assert minutes >= 15 and health["start_interval"] == "10s", f"{stack}/{name}"


def test_baseline_runs_stock_vllm_with_prefix_caching() -> None:
    services = load_compose("baseline")["services"]
    for name in REFERENCE_LAYOUT:
        service = services[name]
        assert service["image"].startswith("vllm/vllm-openai:v0.30.0@sha256:")
        argv = command(service)
        assert "--enable-prefix-caching" in argv
        assert "--gpu-memory-utilization=0.90" in argv


@pytest.mark.parametrize(
    ("stack", "prefix_flag"),
    [("managed", "--no-enable-prefix-caching"), ("managed-prefix", "--enable-prefix-caching")],
)
def test_managed_stacks_run_kvcached_without_a_memory_fraction(
    stack: str, prefix_flag: str
) -> None:
    services = load_compose(stack)["services"]
    for name in REFERENCE_LAYOUT:
        service = services[name]
        assert service["image"].startswith(f"{KVCACHED}:kvcached-v0.1.6-vllm-v0.30.0@")
        argv = command(service)
        assert prefix_flag in argv
        assert not any(arg.startswith("--gpu-memory-utilization") for arg in argv)
        assert environment(service)["ENABLE_KVCACHED"] == "true"
        assert environment(service)["KVCACHED_AUTOPATCH"] == "1"


def test_managed_prefix_is_managed_with_bounded_prefix_caching() -> None:
    managed, prefix = load_compose("managed"), load_compose("managed-prefix")
    for name in REFERENCE_LAYOUT:
        env = environment(prefix["services"][name])
        bound = env.pop("KVCACHED_MAX_CACHED_TOKENS")
        assert with_defaults(bound or "") == "16000"
        assert env == environment(managed["services"][name])
        flags = [
            "--enable-prefix-caching" if arg == "--no-enable-prefix-caching" else arg
            for arg in managed["services"][name]["command"]
        ]
        assert prefix["services"][name]["command"] == flags
    assert "KVCACHED_MAX_CACHED_TOKENS" not in (COMPOSE / "managed.yaml").read_text()


def test_managed_colocated_runs_two_kvcached_engines_on_each_gpu() -> None:
    services = load_compose("managed-colocated")["services"]
    by_gpu: dict[str, list[str]] = {}
    for name, (model, gpus) in COLOCATED_LAYOUT.items():
        service = services[name]
        by_gpu.setdefault(gpus[0], []).append(model)
        assert service["image"].startswith(f"{KVCACHED}:kvcached-v0.1.6-vllm-v0.30.0@")
        argv = command(service)
        assert "--no-enable-prefix-caching" in argv
        assert not any(arg.startswith("--gpu-memory-utilization") for arg in argv)
        env = environment(service)
        assert (env["ENABLE_KVCACHED"], env["KVCACHED_AUTOPATCH"]) == ("true", "1")
        assert env["KVCACHED_IPC_NAME"] == name, "engines keep their kvcached segments apart"
    assert by_gpu == {str(gpu): [LLAMA, QWEN] for gpu in range(4)}
    download = {"download": {"condition": "service_completed_successfully"}}
    for gpu in range(4):  # the second engine on a GPU starts once the first is up
        assert services[f"llama-{gpu}"]["depends_on"] == download
        assert services[f"qwen-{gpu}"]["depends_on"] == {
            **download,
            f"llama-{gpu}": {"condition": "service_healthy"},
        }


def test_the_colocated_stack_is_the_simulators_colocated_layout() -> None:
    layout = pytest.importorskip("loadtest.sim.layout")
    simulated: dict[str, list[str]] = {}
    for place in layout.placements("colocated-elastic"):
        simulated.setdefault(place.seat.gpus.removeprefix("gpu"), []).append(place.seat.model)
    deployed: dict[str, list[str]] = {}
    for model, gpus in COLOCATED_LAYOUT.values():
        deployed.setdefault(gpus[0], []).append(model)
    assert simulated == deployed
    assert layout.deployment("colocated-elastic").prefix_caching is False


def test_sim_stack_needs_no_gpu() -> None:
    services = load_compose("sim")["services"]
    for name, service in services.items():
        assert gpu_ids(service) == [], name
        assert "runtime" not in service, name
    fleets = {"baseline": "baseline", "managed": "managed", "managed-prefix": "managed-prefix"}
    fleets["managed-colocated"] = "colocated-elastic"
    for stack, fleet in fleets.items():
        assert command(services[f"sim-{stack}"])[:3] == ["vllm-sim", "fleet", fleet]


# -- .env.example -----------------------------------------------------------------------------


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
