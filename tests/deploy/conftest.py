"""A live gateway in front of simulated replicas, and Prometheus' binaries, for the deploy tests."""

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from openai import OpenAI

from tests.procs import Proc, bin_path, free_port, start

MODEL = "tiny-model"
REQUESTS = 4  # sent through the gateway before any test reads its metrics


def prometheus_tool(name: str) -> str:
    """Path of `promtool` or `prometheus`; skips, naming what is missing, when it is absent."""
    path = shutil.which(name)
    if path is None:
        message = (
            f"{name} not found on PATH: install Debian's `prometheus` package "
            "(apt-get install prometheus), which scripts/test.sh does when run as root"
        )
        # CI must run these checks, never skip them.
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@dataclass
class LiveGateway:
    gateway: Proc
    replicas: list[Proc]
    sent: int

    @property
    def url(self) -> str:
        return self.gateway.url

    def metrics(self) -> str:
        response = httpx.get(self.url + "/metrics", timeout=5.0)
        response.raise_for_status()
        return response.text


def wait_healthy(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url}/health did not answer 200 within {timeout}s")


@pytest.fixture(scope="session")
def live_gateway() -> Iterator[LiveGateway]:
    """Two `vllm-sim serve --profile tiny` replicas behind a real gateway, with traffic sent."""
    started: list[Proc] = []
    try:
        for _ in range(2):
            port = free_port()
            argv = [bin_path("vllm-sim"), "serve", "--model", MODEL, "--profile", "tiny"]
            started.append(start([*argv, "--port", str(port)], port=port))
        port = free_port()
        env = {
            "GATEWAY_REPLICAS": ",".join(replica.url for replica in started),
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(port),
            "GATEWAY_POLL_INTERVAL": "0.2",
            "GATEWAY_HEALTH_INTERVAL": "0.2",
        }
        gateway = start([bin_path("gateway")], port=port, env=env)
        started.append(gateway)
        wait_healthy(gateway.url)
        with OpenAI(base_url=gateway.url + "/v1", api_key="unused", timeout=10.0) as client:
            for i in range(REQUESTS):
                messages = [{"role": "user", "content": f"hello {i}"}]
                if i % 2:
                    stream = client.chat.completions.create(
                        model=MODEL, messages=messages, max_tokens=4, stream=True
                    )
                    assert [chunk for chunk in stream]
                else:
                    reply = client.chat.completions.create(
                        model=MODEL, messages=messages, max_tokens=4
                    )
                    assert reply.choices[0].message.content
        yield LiveGateway(gateway, started[:-1], REQUESTS)
    finally:
        for proc in reversed(started):
            proc.stop()
