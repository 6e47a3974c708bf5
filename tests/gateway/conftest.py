"""Fixtures for the gateway's end-to-end tests: fake replicas, gateways, SDK clients."""

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.procs import Proc, bin_path


class Fake:
    """A fake replica process and its control endpoints."""

    def __init__(self, proc: Proc, name: str) -> None:
        self.proc = proc
        self.name = name

    @property
    def url(self) -> str:
        return self.proc.url

    def configure(self, **config: Any) -> None:
        httpx.post(self.url + "/fake/config", json=config, timeout=5).raise_for_status()

    def state(self) -> dict[str, Any]:
        response = httpx.get(self.url + "/fake/state", timeout=5)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
def fake(spawn: Callable[..., Proc]) -> Callable[..., Fake]:
    def _fake(name: str = "fake", models: Sequence[str] = ("m1",)) -> Fake:
        argv = [sys.executable, "-m", "tests.gateway.fake_replica", "--port", "{port}"]
        proc = spawn([*argv, "--name", name, "--models", ",".join(models)])
        return Fake(proc, name)

    return _fake


def replicas_file(tmp_path: Path, entries: list[dict[str, Any]]) -> Path:
    path = tmp_path / f"replicas-{len(list(tmp_path.iterdir()))}.yaml"
    path.write_text(yaml.safe_dump({"replicas": entries}))
    return path


@pytest.fixture
def gateway(spawn: Callable[..., Proc]) -> Callable[..., Proc]:
    """gateway(replicas=[urls] | replicas_file=path, env={...}, **GATEWAY_ settings) -> running
    gateway; `env` adds other variables (a replica's API key)."""

    def _gateway(env: dict[str, str] | None = None, **settings: Any) -> Proc:
        env = {
            "GATEWAY_HEALTH_INTERVAL": "30",
            "GATEWAY_LOG_LEVEL": "warning",
            **(env or {}),
        }
        for key, value in settings.items():
            if isinstance(value, list | tuple):
                value = ",".join(value)
            env[f"GATEWAY_{key.upper()}"] = str(value)
        return spawn([bin_path("gateway"), "--port", "{port}"], env=env)

    return _gateway


SDK = Callable[..., openai.OpenAI]


@pytest.fixture
def sdk() -> Iterator[SDK]:
    """sdk(gateway_proc, key=..., **options): an OpenAI client, closed after the test."""
    clients: list[openai.OpenAI] = []

    def _sdk(proc: Proc, key: str = "unused", **kwargs: Any) -> openai.OpenAI:
        options: dict[str, Any] = {"max_retries": 0, "timeout": 10.0, **kwargs}
        client = openai.OpenAI(base_url=proc.url + "/v1", api_key=key, **options)
        clients.append(client)
        return client

    yield _sdk
    for client in clients:
        client.close()


def admin_replicas(proc: Proc, **headers: str) -> dict[str, Any]:
    response = httpx.get(proc.url + "/admin/replicas", headers=headers, timeout=5)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def wait_until(check: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Poll `check` every 50 ms until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"not true within {timeout}s: {what or check}")


@pytest.fixture
def chat() -> Iterator[dict[str, Any]]:
    yield {"model": "m1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
