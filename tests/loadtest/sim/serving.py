"""Helpers for end-to-end tests of `vllm-sim serve`: its argv, and reading its /metrics."""

import time
from collections.abc import Callable, Iterator

import httpx
import openai
from prometheus_client.parser import text_string_to_metric_families

from tests.procs import Proc, bin_path

MODEL = "sim-tiny"


def serve_argv(*flags: str, model: str = MODEL) -> list[str]:
    """`vllm-sim serve` with the tiny profile on the spawn fixture's {port}."""
    return [
        bin_path("vllm-sim"),
        *("serve", "--model", model, "--profile", "tiny", "--port", "{port}"),
        *("--log-level", "warning"),
        *flags,
    ]


def scrape(url: str) -> dict[str, float]:
    """Every sample of /metrics by `name{label="v",...}` (labels sorted), parsed by prometheus."""
    text = httpx.get(url + "/metrics", timeout=5.0).text
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def gauge(url: str, name: str, model: str = MODEL, *, legacy: bool = False) -> float:
    """One gauge's value (pre-0.9 names carry no `engine` label)."""
    engine = "" if legacy else 'engine="0",'
    return scrape(url)[f'{name}{{{engine}model_name="{model}"}}']


def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll `check` every 20 ms for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


SdkFactory = Callable[[Proc], openai.OpenAI]


def sdk_clients() -> Iterator[SdkFactory]:
    """Body of an `sdk` fixture: openai clients (no retries) for a Proc, all closed after."""
    clients: list[openai.OpenAI] = []

    def make(proc: Proc) -> openai.OpenAI:
        sdk = openai.OpenAI(base_url=proc.url + "/v1", api_key="unused", max_retries=0, timeout=10)
        clients.append(sdk)
        return sdk

    yield make
    for sdk in clients:
        sdk.close()
