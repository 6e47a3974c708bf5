"""/metrics for one simulated replica: vLLM's names, types, labels and buckets (and, below,
SGLang's and llama-server's, for replicas presenting themselves as those servers).

Current names follow vLLM 0.32 (tests/fixtures/vllm-0.32.0-metrics.txt is a real server's
page, and tests/loadtest/sim/test_metrics.py checks against it): every
series carries `model_name` and `engine="0"`. `legacy=True` emits the pre-0.9
names instead (`vllm:gpu_cache_usage_perc`, `vllm:time_per_output_token_seconds`,
`vllm:gpu_prefix_cache_hit_rate`, `vllm:num_requests_swapped`; no `engine`
label), so pollers can be tested against old servers.

Gauges and counters are read from the engine at scrape time; the latency
histograms are fed by the server as tokens come out (cheap list increments, no
locks), and exported through one collector on a per-app CollectorRegistry.
"""

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from loadtest.sim.types import EngineStats

# Bucket upper bounds of vLLM's V1 histograms (vllm/v1/metrics/loggers.py, as scraped).
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
    2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
ITL_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0,
    2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
REQUEST_LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0,
    50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
FINISHED_REASONS = ("stop", "length", "abort", "error", "repetition")


class Histogram:
    """Bucket counts for one histogram; `observe` is a bisect and two additions."""

    __slots__ = ("bounds", "count", "counts", "created", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0
        self.count = 0
        self.created = time.time()

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        return out


class LatencyHistograms:
    """The four request-latency histograms the server feeds."""

    def __init__(self) -> None:
        self.ttft = Histogram(TTFT_BUCKETS)
        self.itl = Histogram(ITL_BUCKETS)
        self.e2e = Histogram(REQUEST_LATENCY_BUCKETS)
        self.queue = Histogram(REQUEST_LATENCY_BUCKETS)


class VllmCollector(Collector):
    """Builds vLLM's metric families from the engine's stats and the latency histograms."""

    def __init__(
        self,
        model: str,
        stats: Callable[[], EngineStats],
        histograms: LatencyHistograms,
        *,
        legacy: bool = False,
    ) -> None:
        self.model = model
        self.stats = stats
        self.histograms = histograms
        self.legacy = legacy
        self.created = time.time()

    def collect(self) -> Iterator[Metric]:
        stats = self.stats()
        if self.legacy:
            yield from self._legacy(stats)
        else:
            yield from self._current(stats)

    def _labels(self) -> tuple[list[str], list[str]]:
        if self.legacy:
            return ["model_name"], [self.model]
        return ["engine", "model_name"], ["0", self.model]

    def _gauge(self, name: str, doc: str, value: float) -> GaugeMetricFamily:
        names, values = self._labels()
        family = GaugeMetricFamily(name, doc, labels=names)
        family.add_metric(values, value)
        return family

    def _counter(self, name: str, doc: str, value: float) -> CounterMetricFamily:
        names, values = self._labels()
        family = CounterMetricFamily(name, doc, labels=names)
        family.add_metric(values, value, created=self.created)
        return family

    def _success(self, stats: EngineStats) -> CounterMetricFamily:
        names, values = self._labels()
        family = CounterMetricFamily(
            "vllm:request_success",
            "Count of successfully processed requests.",
            labels=[*names, "finished_reason"],
        )
        for reason in FINISHED_REASONS:
            count = stats.finished.get(reason, 0)
            family.add_metric([*values, reason], count, created=self.created)
        return family

    def _histogram(self, name: str, doc: str, hist: Histogram) -> HistogramMetricFamily:
        names, values = self._labels()
        family = HistogramMetricFamily(name, doc, labels=names)
        family.add_metric(values, hist.cumulative(), hist.total)
        labels = dict(zip(names, values, strict=True))
        family.samples.append(Sample(name + "_created", labels, hist.created))
        return family

    def _common(self, stats: EngineStats) -> Iterator[Metric]:
        yield self._counter(
            "vllm:num_preemptions", "Cumulative number of preemption from the engine.",
            stats.preemptions,
        )  # fmt: skip
        yield self._counter(
            "vllm:prompt_tokens", "Number of prefill tokens processed.", stats.prompt_tokens
        )
        yield self._counter(
            "vllm:generation_tokens", "Number of generation tokens processed.",
            stats.generation_tokens,
        )  # fmt: skip
        yield self._success(stats)
        hist = self.histograms
        yield self._histogram(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            hist.ttft,
        )

    def _current(self, stats: EngineStats) -> Iterator[Metric]:
        hist = self.histograms
        yield self._gauge(
            "vllm:num_requests_running", "Number of requests in model execution batches.",
            stats.running,
        )  # fmt: skip
        yield self._gauge(
            "vllm:num_requests_waiting", "Number of requests waiting to be processed.",
            stats.waiting,
        )  # fmt: skip
        yield self._gauge(
            "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.",
            stats.kv_usage,
        )  # fmt: skip
        yield self._counter(
            "vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.",
            stats.prefix_queries,
        )
        yield self._counter(
            "vllm:prefix_cache_hits",
            "Prefix cache hits, in terms of number of cached tokens.",
            stats.prefix_hits,
        )
        yield from self._common(stats)
        yield self._histogram(
            "vllm:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            hist.itl,
        )
        yield self._histogram(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            hist.e2e,
        )
        yield self._histogram(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            hist.queue,
        )

    def _legacy(self, stats: EngineStats) -> Iterator[Metric]:
        hist = self.histograms
        yield self._gauge(
            "vllm:num_requests_running", "Number of requests currently running on GPU.",
            stats.running,
        )  # fmt: skip
        yield self._gauge("vllm:num_requests_swapped", "Number of requests swapped to CPU.", 0)
        yield self._gauge(
            "vllm:num_requests_waiting", "Number of requests waiting to be processed.",
            stats.waiting,
        )  # fmt: skip
        yield self._gauge(
            "vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage.",
            stats.kv_usage,
        )  # fmt: skip
        yield self._gauge(
            "vllm:cpu_cache_usage_perc", "CPU KV-cache usage. 1 means 100 percent usage.", 0
        )
        hit_rate = stats.prefix_hits / stats.prefix_queries if stats.prefix_queries else 0.0
        yield self._gauge(
            "vllm:gpu_prefix_cache_hit_rate", "GPU prefix cache block hit rate.", hit_rate
        )
        yield from self._common(stats)
        yield self._histogram(
            "vllm:time_per_output_token_seconds",
            "Histogram of time per output token in seconds.",
            hist.itl,
        )
        yield self._histogram(
            "vllm:e2e_request_latency_seconds",
            "Histogram of end to end request latency in seconds.",
            hist.e2e,
        )
        yield self._histogram(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            hist.queue,
        )


def metrics_registry(collector: Collector) -> CollectorRegistry:
    """A fresh registry holding only this replica's collector (never the global one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


class SglangCollector(Collector):
    """SGLang's /metrics (--enable-metrics): the scheduler gauges and tokenizer counters
    the gateway and dashboards read, with SGLang's labels (sgl-project/sglang,
    python/sglang/srt/metrics/collector.py). One scheduler: tp_rank and pp_rank 0."""

    LABELS = ("engine_type", "model_name", "pp_rank", "tp_rank")

    def __init__(self, model: str, stats: Callable[[], EngineStats]) -> None:
        self.model = model
        self.stats = stats
        self.created = time.time()

    def collect(self) -> Iterator[Metric]:
        stats = self.stats()
        values = ["unified", self.model, "0", "0"]
        gauges = (
            ("sglang:num_running_reqs", "The number of running requests.", stats.running),
            ("sglang:num_queue_reqs", "The number of requests in the waiting queue.",
             stats.waiting),
            ("sglang:token_usage", "The token usage.", stats.kv_usage),
            ("sglang:num_used_tokens", "The number of used tokens.", stats.used_blocks * 16),
            ("sglang:max_total_num_tokens", "Maximum total number of tokens in the KV pool.",
             stats.num_blocks * 16),
        )  # fmt: skip
        for name, doc, value in gauges:
            family = GaugeMetricFamily(name, doc, labels=self.LABELS)
            family.add_metric(values, value)
            yield family
        finished = sum(stats.finished.values())
        counters = (
            ("sglang:prompt_tokens", "Number of prefill tokens processed.", stats.prompt_tokens),
            ("sglang:generation_tokens", "Number of generation tokens processed.",
             stats.generation_tokens),
            ("sglang:cached_tokens", "Number of cached prompt tokens.", stats.prefix_hits),
            ("sglang:num_requests", "Number of requests processed.", finished),
        )  # fmt: skip
        for name, doc, value in counters:
            counter = CounterMetricFamily(name, doc, labels=self.LABELS)
            counter.add_metric(values, value, created=self.created)
            yield counter


# llama-server's /metrics (--metrics): eleven unlabelled series (ggml-org/llama.cpp
# tools/server/README.md; the KV gauges went in PR #13660). Written by hand, since
# prometheus-client would rename `n_tokens_max`, a counter without `_total`.
_LLAMA_SERVER_SERIES = (
    ("prompt_tokens_total", "counter", "Number of prompt tokens processed."),
    ("prompt_seconds_total", "counter", "Prompt process time"),
    ("tokens_predicted_total", "counter", "Number of generation tokens processed."),
    ("tokens_predicted_seconds_total", "counter", "Predict process time"),
    ("n_decode_total", "counter", "Total number of llama_decode() calls"),
    ("n_tokens_max", "counter", "Largest observed n_tokens."),
    ("n_busy_slots_per_decode", "gauge", "Average number of busy slots per llama_decode() call"),
    ("prompt_tokens_seconds", "gauge", "Average prompt throughput in tokens/s."),
    ("predicted_tokens_seconds", "gauge", "Average generation throughput in tokens/s."),
    ("requests_processing", "gauge", "Number of requests processing."),
    ("requests_deferred", "gauge", "Number of requests deferred."),
)


def llama_server_metrics(stats: EngineStats) -> bytes:
    """llama-server's exposition text. Timings are not simulated and read 0."""
    values = {
        "prompt_tokens_total": stats.prompt_tokens,
        "tokens_predicted_total": stats.generation_tokens,
        "n_busy_slots_per_decode": stats.running,
        "requests_processing": stats.running,
        "requests_deferred": stats.waiting,
    }
    lines = []
    for name, kind, doc in _LLAMA_SERVER_SERIES:
        lines += [
            f"# HELP llamacpp:{name} {doc}",
            f"# TYPE llamacpp:{name} {kind}",
            f"llamacpp:{name} {values.get(name, 0)}",
        ]
    return ("\n".join(lines) + "\n").encode()
