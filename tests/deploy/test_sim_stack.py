"""compose/sim.yaml without Docker: its commands and gateway settings, run on loopback.

Each environment's fleet runs with the service's own command, and its gateway with the
service's own GATEWAY_ variables and the image's CMD; only addresses change (127.0.0.1 and
free ports instead of service names and fixed ports).
"""

import json
import re
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openai import OpenAI

from tests.deploy.conftest import wait_healthy
from tests.deploy.files import ROOT, environment, load_compose, replica_addresses, with_defaults
from tests.procs import HOST, Proc, bin_path, free_port, start

TWO = {"meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-7B-Instruct"}
THREE = {*TWO, "mistralai/Mixtral-8x7B-Instruct-v0.1"}
ENVIRONMENTS = {  # name: (strategy, replicas, models served)
    "baseline": ("round_robin", 6, THREE),
    "managed": ("least_work", 6, THREE),
    "managed-prefix": ("least_work", 6, THREE),
    "managed-colocated": ("round_robin", 8, TWO),
}
ADMIN_KEY = "sim-stack-admin-key"  # what .env would give GATEWAY_ADMIN_KEY


def image_cmd() -> list[str]:
    """The Dockerfile's CMD (exec form)."""
    text = (ROOT / "docker" / "Dockerfile").read_text()
    (cmd,) = re.findall(r"^CMD (\[.*\])$", text, flags=re.MULTILINE)
    argv: list[str] = json.loads(cmd)
    return argv


def free_port_run(length: int, attempts: int = 50) -> int:
    """A base port such that base .. base+length-1 are all free right now."""
    for _ in range(attempts):
        base = free_port()
        sockets = []
        try:
            for port in range(base, base + length):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind((HOST, port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no run of {length} free ports in {attempts} attempts")


def localised(argv: list[str], base: int) -> list[str]:
    """The fleet command with loopback and a free base port in place of 0.0.0.0 and 8001."""
    out = []
    for arg in argv:
        arg = with_defaults(arg)
        if arg.startswith("--host="):
            arg = f"--host={HOST}"
        elif arg.startswith("--base-port="):
            arg = f"--base-port={base}"
        out.append(arg)
    return out


@pytest.fixture(params=sorted(ENVIRONMENTS))
def sim_environment(request: pytest.FixtureRequest) -> Iterator[tuple[str, Proc]]:
    """One environment of sim.yaml (fleet + gateway) on loopback; yields (name, gateway)."""
    env_name: str = request.param
    services: dict[str, Any] = load_compose("sim")["services"]
    fleet_service, gateway_service = services[f"sim-{env_name}"], services[f"gateway-{env_name}"]
    started: list[Proc] = []
    try:
        count = ENVIRONMENTS[env_name][1]
        base = free_port_run(count)
        argv = localised([str(arg) for arg in fleet_service["command"]], base)
        assert argv[0] == "vllm-sim"
        started.append(start([bin_path(argv[0]), *argv[1:]], port=base, timeout=60.0))
        ports = {f"sim-{env_name}:{8001 + i}": base + i for i in range(count)}
        for port in ports.values():
            wait_healthy(f"http://{HOST}:{port}", timeout=30.0)
        gateway_env = {
            key: with_defaults(value, {"GATEWAY_ADMIN_KEY": ADMIN_KEY})
            for key, value in environment(gateway_service).items()
            if value is not None
        }
        replicas = replica_addresses(gateway_service)
        assert sorted(replicas) == sorted(ports)
        gateway_env["GATEWAY_REPLICAS"] = ",".join(f"http://{HOST}:{ports[r]}" for r in replicas)
        gateway_env["GATEWAY_HOST"] = HOST
        gateway_env["GATEWAY_PORT"] = str(free_port())
        gateway_env["TURNOUT_HEALTH_URL"] = f"http://{HOST}:{gateway_env['GATEWAY_PORT']}/health"
        cmd = image_cmd()
        gateway = start(
            [bin_path(cmd[0]), *cmd[1:]],
            port=int(gateway_env["GATEWAY_PORT"]),
            env=gateway_env,
            timeout=30.0,
        )
        started.append(gateway)
        wait_healthy(gateway.url, timeout=30.0)
        yield env_name, gateway
    finally:
        for proc in reversed(started):
            proc.stop()


def test_sim_environment_serves_every_model_with_its_strategy(
    sim_environment: tuple[str, Proc],
) -> None:
    env_name, gateway = sim_environment
    strategy, count, models = ENVIRONMENTS[env_name]
    assert httpx.get(gateway.url + "/admin/replicas", timeout=5.0).status_code == 401
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    admin = httpx.get(gateway.url + "/admin/replicas", headers=headers, timeout=5.0).json()
    assert admin["strategy"] == strategy
    assert len(admin["replicas"]) == count
    with OpenAI(base_url=gateway.url + "/v1", api_key="unused", timeout=30.0) as client:
        assert {model.id for model in client.models.list()} == models
        for model in sorted(models):
            raw = client.chat.completions.with_raw_response.create(
                model=model, messages=[{"role": "user", "content": "hello"}], max_tokens=4
            )
            assert raw.headers["x-turnout-replica"]
            assert raw.parse().choices[0].message.content
