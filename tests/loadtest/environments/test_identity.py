"""Telling a simulated target from a real one: vllm-sim directly or behind a gateway."""

from collections.abc import Callable
from pathlib import Path

import yaml

from loadtest.environments.identity import is_simulated
from tests.loadtest.sim.serving import serve_argv
from tests.procs import Proc, bin_path, free_port


def test_vllm_sim_directly_and_behind_a_gateway(spawn: Callable[..., Proc], tmp_path: Path) -> None:
    sim = spawn(serve_argv())
    assert is_simulated(sim.url)
    assert is_simulated(sim.url + "/v1/")
    replicas = tmp_path / "replicas.yaml"
    replicas.write_text(yaml.safe_dump({"replicas": [{"url": sim.url, "name": "s0"}]}))
    env = {"GATEWAY_REPLICAS_FILE": str(replicas), "GATEWAY_LOG_LEVEL": "warning"}
    gateway = spawn([bin_path("gateway"), "--port", "{port}"], env=env)
    assert is_simulated(gateway.url)


def test_other_servers_and_no_server_are_not_simulated(fake_openai: Callable[..., Proc]) -> None:
    assert not is_simulated(fake_openai().url)
    assert not is_simulated(f"http://127.0.0.1:{free_port()}")
