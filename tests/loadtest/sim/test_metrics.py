"""vllm-sim's /metrics: vLLM's names, types, labels and buckets, and values that add up."""

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadtest.sim.exposition import LatencyHistograms, VllmCollector, metrics_registry, render
from loadtest.sim.types import EngineStats
from tests.loadtest.sim.serving import (
    MODEL,
    SdkFactory,
    gauge,
    scrape,
    sdk_clients,
    serve_argv,
    wait_until,
)
from tests.procs import Proc

# /metrics of a real vLLM 0.32.0 server (tests/fixtures/README.md says how it was taken).
FIXTURE_TEXT = (Path(__file__).parents[2] / "fixtures" / "vllm-0.32.0-metrics.txt").read_text()
REQUIRED = {
    "vllm:num_requests_running": "gauge",
    "vllm:num_requests_waiting": "gauge",
    "vllm:kv_cache_usage_perc": "gauge",
    "vllm:prefix_cache_queries": "counter",
    "vllm:prefix_cache_hits": "counter",
    "vllm:num_preemptions": "counter",
    "vllm:prompt_tokens": "counter",
    "vllm:generation_tokens": "counter",
    "vllm:request_success": "counter",
    "vllm:time_to_first_token_seconds": "histogram",
    "vllm:inter_token_latency_seconds": "histogram",
    "vllm:e2e_request_latency_seconds": "histogram",
    "vllm:request_queue_time_seconds": "histogram",
}
STATS = EngineStats(
    waiting=4,
    running=8,
    kv_usage=0.25,
    prefix_queries=100,
    prefix_hits=40,
    preemptions=2,
    prompt_tokens=300,
    generation_tokens=900,
    finished={"stop": 1, "length": 7, "abort": 1},
)


def shape(text: str) -> dict[str, tuple[str, dict[str, frozenset[str]]]]:
    """name -> (type, sample name -> its label names), as prometheus' parser reads them."""
    out = {}
    for family in text_string_to_metric_families(text):
        labels: dict[str, frozenset[str]] = {}
        for sample in family.samples:
            labels[sample.name] = labels.get(sample.name, frozenset()) | frozenset(sample.labels)
        out[family.name] = (family.type, labels)
    return out


@pytest.fixture
def sdk() -> Iterator[SdkFactory]:
    yield from sdk_clients()


def rendered(legacy: bool = False) -> str:
    histograms = LatencyHistograms()
    histograms.ttft.observe(0.03)
    histograms.itl.observe(0.012)
    collector = VllmCollector("tiny", lambda: STATS, histograms, legacy=legacy)
    return render(metrics_registry(collector)).decode()


def test_names_types_and_labels_match_real_vllm() -> None:
    ours, vllm = shape(rendered()), shape(FIXTURE_TEXT)
    for name, kind in REQUIRED.items():
        assert ours[name][0] == kind, name
    for name, (kind, labels) in ours.items():
        assert name in vllm, f"{name} is not a vLLM 0.32 metric"
        assert kind == vllm[name][0], name
        assert labels == vllm[name][1], name


def test_histogram_buckets_are_vllms() -> None:
    def bounds(text: str, name: str) -> list[str]:
        family = next(f for f in text_string_to_metric_families(text) if f.name == name)
        return [s.labels["le"] for s in family.samples if s.name.endswith("_bucket")]

    for name, kind in REQUIRED.items():
        if kind == "histogram":
            assert bounds(rendered(), name) == bounds(FIXTURE_TEXT, name), name


def test_values_come_from_the_engine_stats() -> None:
    samples = {
        (s.name, s.labels.get("finished_reason")): s.value
        for family in text_string_to_metric_families(rendered())
        for s in family.samples
    }
    assert samples[("vllm:num_requests_waiting", None)] == 4
    assert samples[("vllm:kv_cache_usage_perc", None)] == 0.25
    assert samples[("vllm:prefix_cache_hits_total", None)] == 40
    assert samples[("vllm:request_success_total", "length")] == 7
    assert samples[("vllm:request_success_total", "repetition")] == 0
    assert samples[("vllm:time_to_first_token_seconds_count", None)] == 1
    assert samples[("vllm:inter_token_latency_seconds_bucket", None)] == 1  # le=0.025 first


def test_legacy_names() -> None:
    ours = shape(rendered(legacy=True))
    assert ours["vllm:gpu_cache_usage_perc"][0] == "gauge"
    assert ours["vllm:time_per_output_token_seconds"][0] == "histogram"
    assert "vllm:kv_cache_usage_perc" not in ours
    assert "vllm:inter_token_latency_seconds" not in ours
    assert ours["vllm:num_requests_waiting"][1]["vllm:num_requests_waiting"] == {"model_name"}


def test_counters_add_up_after_real_requests(spawn: Callable[..., Proc], sdk: SdkFactory) -> None:
    proc = spawn(serve_argv())
    client = sdk(proc)
    prompt = "A shared system prompt that is long enough to fill a few blocks. " * 6

    def ask(i: int) -> int:
        reply = client.completions.create(
            model=MODEL, prompt=prompt, max_tokens=10 + i, extra_body={"ignore_eos": True}
        )
        assert reply.usage is not None
        return reply.usage.prompt_tokens

    prompt_tokens = [ask(0)]  # first alone, so the others can hit its cached blocks
    with ThreadPoolExecutor(4) as pool:
        prompt_tokens += list(pool.map(ask, range(1, 5)))
    samples = scrape(proc.url)
    one = f'engine="0",model_name="{MODEL}"'
    assert samples[f"vllm:generation_tokens_total{{{one}}}"] == sum(10 + i for i in range(5))
    assert samples[f"vllm:prompt_tokens_total{{{one}}}"] == sum(prompt_tokens)
    length = f'engine="0",finished_reason="length",model_name="{MODEL}"'
    assert samples[f"vllm:request_success_total{{{length}}}"] == 5
    assert samples[f"vllm:time_to_first_token_seconds_count{{{one}}}"] == 5
    assert samples[f"vllm:inter_token_latency_seconds_count{{{one}}}"] == sum(
        9 + i for i in range(5)
    )
    assert samples[f"vllm:e2e_request_latency_seconds_count{{{one}}}"] == 5
    assert samples[f"vllm:request_queue_time_seconds_count{{{one}}}"] == 5
    assert samples[f"vllm:prefix_cache_hits_total{{{one}}}"] > 0
    assert samples[f"vllm:prefix_cache_queries_total{{{one}}}"] >= sum(prompt_tokens)
    assert gauge(proc.url, "vllm:num_requests_running") == 0


def test_waiting_requests_show_in_the_queue_gauge(spawn: Callable[..., Proc]) -> None:
    proc = spawn(serve_argv("--max-num-seqs", "1", "--time-scale", "5"))
    body = {"model": MODEL, "prompt": "go", "max_tokens": 2000, "ignore_eos": True, "stream": True}
    with httpx.Client(timeout=10) as client:
        streams = [client.stream("POST", proc.url + "/v1/completions", json=body) for _ in range(3)]
        responses = [s.__enter__() for s in streams]
        try:
            assert wait_until(lambda: gauge(proc.url, "vllm:num_requests_waiting") == 2)
            assert gauge(proc.url, "vllm:num_requests_running") == 1
        finally:
            for s in streams:
                s.__exit__(None, None, None)
        assert all(r.status_code == 200 for r in responses)
    assert wait_until(lambda: gauge(proc.url, "vllm:num_requests_waiting") == 0)


def test_no_prefix_caching_and_legacy_flags(spawn: Callable[..., Proc], sdk: SdkFactory) -> None:
    proc = spawn(serve_argv("--no-prefix-caching", "--legacy-metrics"))
    client = sdk(proc)
    for _ in range(2):
        client.completions.create(model=MODEL, prompt="same prompt " * 20, max_tokens=3)
    samples = scrape(proc.url)
    assert samples[f'vllm:gpu_prefix_cache_hit_rate{{model_name="{MODEL}"}}'] == 0
    assert samples[f'vllm:gpu_cache_usage_perc{{model_name="{MODEL}"}}'] == 0
    assert httpx.get(proc.url + "/version").json()["version"].startswith("0.8")
