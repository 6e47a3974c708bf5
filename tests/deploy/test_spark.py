"""compose/spark.yaml, the DGX Spark stack: arm64-safe images, the memory split it states
(and that the defaults fit in the box), gateways whose replicas files the gateway itself
accepts, and those files working for real in front of simulated vLLM and Ollama."""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from openai import OpenAI

from gateway.replicas_file import load_replica_specs
from gateway.settings import GatewaySettings
from loadtest.environments.catalog import load_environments, shipped_environments
from loadtest.sim.profiles import load_profile
from tests.deploy.files import COMPOSE, ROOT, environment, with_defaults
from tests.procs import Proc, bin_path, free_port, start

SPARK = COMPOSE / "spark.yaml"
TEXT = SPARK.read_text()
STACK: dict[str, Any] = yaml.safe_load(TEXT)
SERVICES: dict[str, Any] = STACK["services"]
MODEL = "Qwen/Qwen2.5-7B-Instruct"
OLLAMA_TAG = "qwen2.5:7b-instruct-fp16"
GIB = 1024**3
SPARK_MEMORY_GIB = 128e9 / GIB  # 128 GB of LPDDR5x, shared by CPU and GPU
# Images that publish linux/arm64 builds, and why we know.
ARM64_IMAGES = {
    # NVIDIA's own DGX Spark playbook runs vLLM from this image on the Spark
    # (NVIDIA/dgx-spark-playbooks, nvidia/vllm/README.md).
    "nvcr.io/nvidia/vllm": "NVIDIA's vLLM build for the Spark",
    # Ollama's official image is multi-arch, linux/amd64 and linux/arm64 (docs/docker.md).
    "ollama/ollama": "multi-arch",
    # Ours, built from docker/Dockerfile on the machine that runs it (see test_dockerfile).
    "turnout": "built locally",
}


def image(service: dict[str, Any]) -> str:
    return with_defaults(service["image"])


def flag(command: list[str], name: str) -> str:
    (value,) = [with_defaults(a).split("=", 1)[1] for a in command if a.startswith(f"--{name}=")]
    return value


def test_parses_as_the_spark_stack_with_pinned_images() -> None:
    assert STACK["name"] == "turnout-spark"
    for name, service in SERVICES.items():
        repository, _, tag = image(service).rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: {image(service)}"
        assert any(ch.isdigit() for ch in tag), f"{name}: tag {tag} is not a version"


def test_every_image_runs_on_arm64() -> None:
    # No platform pinned anywhere, nothing amd64-only named, and only images known to
    # publish arm64 builds.
    assert not re.search(r"amd64|x86[_-]64|\bplatform:", TEXT)
    for name, service in SERVICES.items():
        repository = image(service).rpartition(":")[0]
        assert repository in ARM64_IMAGES, f"{name}: {repository} is not known to run on arm64"


def test_the_image_installs_nothing_architecture_specific() -> None:
    # Only name==version pins, resolved by pip for the platform it builds on (wheels for
    # amd64 and arm64 alike, or pure Python): no wheel URLs, no forced platforms.
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    pins = [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]
    assert pins and all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[\w.+\-]+", pin) for pin in pins)
    text = (ROOT / "docker" / "Dockerfile").read_text()
    instructions = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    forced = r"--platform|--only-binary|\.whl|manylinux|amd64|x86_64"
    assert not re.search(forced, "\n".join(instructions))


def test_the_memory_split_is_stated_configurable_and_fits() -> None:
    vllm_command = SERVICES["vllm"]["command"]
    assert "${SPARK_VLLM_MEMORY_FRACTION:-" in " ".join(vllm_command)
    fraction = float(flag(vllm_command, "gpu-memory-utilization"))
    ollama_env = environment(SERVICES["ollama"])
    parallel = int(with_defaults(ollama_env["OLLAMA_NUM_PARALLEL"] or ""))
    context = int(with_defaults(ollama_env["OLLAMA_CONTEXT_LENGTH"] or ""))
    for variable in ("SPARK_VLLM_MEMORY_FRACTION", "OLLAMA_NUM_PARALLEL", "OLLAMA_CONTEXT_LENGTH"):
        assert variable in TEXT.split("name:", 1)[0], f"the header does not state {variable}"
    # Ollama keeps its model loaded, so its share does not come and go.
    assert ollama_env["OLLAMA_KEEP_ALIVE"] == "-1"
    profile = load_profile("qwen2.5-7b-gb10")
    vllm_gib = fraction * SPARK_MEMORY_GIB
    ollama_gib = (profile.weight_bytes + parallel * context * profile.kv_bytes_per_token) / GIB
    assert vllm_gib + ollama_gib < 100, "leave the OS and page cache their share"
    # What the header says the defaults come to.
    assert f"~{vllm_gib:.1f} GiB" in TEXT
    assert f"{parallel * context * profile.kv_bytes_per_token / GIB:.2f} GiB" in TEXT


def test_the_simulated_spark_environments_follow_the_compose_defaults() -> None:
    envs = shipped_environments()
    (vllm,) = envs["spark-vllm"].replicas
    (ollama,) = envs["spark-ollama"].replicas
    assert vllm.model == MODEL and ollama.alias == MODEL and ollama.model == OLLAMA_TAG
    assert vllm.profile == "qwen2.5-7b-gb10"
    # The same model and GPU on Ollama's engine (fixed slots): same weights, same KV per token.
    assert ollama.profile == "qwen2.5-7b-fp16-gb10-ollama"
    on_vllm, on_ollama = load_profile(vllm.profile), load_profile(ollama.profile)
    assert on_ollama.engine == "ollama" and on_vllm.engine == "vllm"
    assert on_ollama.weight_bytes == pytest.approx(on_vllm.weight_bytes, rel=0.01)
    assert on_ollama.kv_bytes_per_token == on_vllm.kv_bytes_per_token
    assert on_ollama.hbm_efficiency == on_vllm.hbm_efficiency
    seqs = flag(SERVICES["vllm"]["command"], "max-num-seqs")
    assert vllm.args[vllm.args.index("--max-num-seqs") + 1] == seqs
    ollama_env = environment(SERVICES["ollama"])
    parallel = with_defaults(ollama_env["OLLAMA_NUM_PARALLEL"] or "")
    context = int(with_defaults(ollama_env["OLLAMA_CONTEXT_LENGTH"] or ""))
    assert ollama.args[ollama.args.index("--max-num-seqs") + 1] == parallel
    blocks = int(ollama.args[ollama.args.index("--kv-blocks") + 1])
    assert blocks * 16 == int(parallel) * context
    # vLLM's KV share in the profile is the one the compose default gives it.
    fraction = float(flag(SERVICES["vllm"]["command"], "gpu-memory-utilization"))
    profile = load_profile("qwen2.5-7b-gb10")
    kv_gib = fraction * 119.2 - profile.weight_bytes / GIB - 3.0
    assert profile.kv_capacity_tokens == pytest.approx(kv_gib * GIB / 57344, rel=0.01)


def gateway_files() -> dict[str, Path]:
    files = {}
    for name, service in SERVICES.items():
        env = environment(service)
        if "GATEWAY_REPLICAS_FILE" in env:
            (mount,) = service["volumes"]
            source, target = mount.split(":")[:2]
            assert target == env["GATEWAY_REPLICAS_FILE"]
            files[name] = (SPARK.parent / source).resolve()
    return files


def test_gateways_read_replicas_files_the_gateway_accepts() -> None:
    files = gateway_files()
    assert set(files) == {"gateway", "gateway-vllm", "gateway-ollama"}
    pulled = SERVICES["ollama-pull"]["command"][-1]
    kinds = {}
    for name, path in files.items():
        specs = load_replica_specs(GatewaySettings(replicas_file=path))
        kinds[name] = sorted(spec.kind or "" for spec in specs)
        for spec in specs:
            service, port = spec.url.removeprefix("http://").split(":")
            assert service in SERVICES, f"{name}: {spec.url} is no service of the stack"
            if spec.kind == "ollama":
                assert port == "11434" and dict(spec.aliases) == {MODEL: pulled}
            else:
                assert port == "8000" and MODEL in SERVICES["vllm"]["command"]
    assert kinds == {
        "gateway": ["ollama", "vllm"],
        "gateway-vllm": ["vllm"],
        "gateway-ollama": ["ollama"],
    }
    ports = [with_defaults(s["ports"][0]).split(":")[0] for s in SERVICES.values() if "ports" in s]
    assert len(ports) == len(set(ports)) == 3


def test_the_environments_file_names_the_two_gateways(tmp_path: Path) -> None:
    envs = load_environments(COMPOSE / "spark-environments.yaml", cwd=tmp_path)
    published = {
        name: with_defaults(service["ports"][0]).split(":")[0]
        for name, service in SERVICES.items()
        if "ports" in service
    }
    assert envs["spark-vllm"].url == f"http://127.0.0.1:{published['gateway-vllm']}"
    assert envs["spark-ollama"].url == f"http://127.0.0.1:{published['gateway-ollama']}"


def test_the_mixed_gateway_file_works_in_front_of_simulated_engines(tmp_path: Path) -> None:
    # The stack's own replicas file, with loopback addresses: vllm-sim as vLLM and as Ollama.
    started: list[Proc] = []
    try:
        urls = {}
        for kind, model in (("vllm", MODEL), ("ollama", OLLAMA_TAG)):
            port = free_port()
            argv = [bin_path("vllm-sim"), "serve", "--model", model, "--profile", "tiny"]
            argv += ["--present-as", kind, "--port", str(port), "--log-level", "warning"]
            started.append(start(argv, port=port, ready_path="/v1/models"))
            urls[kind] = started[-1].url
        spec: dict[str, Any] = yaml.safe_load(gateway_files()["gateway"].read_text())
        for entry in spec["replicas"]:
            entry["url"] = urls[entry["kind"]]
        path = tmp_path / "replicas.yaml"
        path.write_text(yaml.safe_dump(spec))
        port = free_port()
        env = {**{k: str(v) for k, v in environment(SERVICES["gateway"]).items()}}
        env.update(GATEWAY_REPLICAS_FILE=str(path), GATEWAY_HOST="127.0.0.1")
        env.update(GATEWAY_PORT=str(port), GATEWAY_LOG_LEVEL="warning")
        started.append(start([bin_path("gateway")], port=port, env=env))
        with OpenAI(base_url=started[-1].url + "/v1", api_key="unused", timeout=10) as client:
            assert [m.id for m in client.models.list().data] == [MODEL]
            served = set()
            # queue_depth breaks ties between idle replicas at random: up to 20 tries to see
            # both (four missed one of them one time in eight).
            for _ in range(20):
                raw = client.chat.completions.with_raw_response.create(
                    model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4
                )
                served.add((raw.headers["x-turnout-replica"], raw.parse().model))
                if len(served) == 2:
                    break
        assert served == {("spark-vllm", MODEL), ("spark-ollama", OLLAMA_TAG)}
    finally:
        for proc in reversed(started):
            proc.stop()
