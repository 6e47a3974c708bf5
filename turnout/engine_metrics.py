"""Prometheus text from an inference server's /metrics, reduced to what strategies use.

Pure: text in, `Metrics` out. Knows vLLM's names across versions, SGLang's and
llama.cpp's. Count gauges are summed over every label set (vLLM labels each engine,
and each data-parallel rank is an engine); usage fractions are averaged over them,
since a sum of fractions means nothing. Only the exact sample names below are read,
so the `_created` series vLLM exports beside every counter never count, and only
their lines are handed to prometheus-client's parser (see `parse_metrics`).
"""

import math
from collections import defaultdict
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from routers import Metrics

# Each field's candidate sample names, newest first; the first one present wins.
_WAITING = ("vllm:num_requests_waiting", "sglang:num_queue_reqs", "llamacpp:requests_deferred")
_RUNNING = ("vllm:num_requests_running", "sglang:num_running_reqs", "llamacpp:requests_processing")
# vLLM renamed gpu_cache_usage_perc to kv_cache_usage_perc in 0.9.
_KV_USAGE = (
    "vllm:kv_cache_usage_perc",
    "vllm:gpu_cache_usage_perc",
    "sglang:token_usage",
    "llamacpp:kv_cache_usage_ratio",
)
# Prefix cache: (hits, queries) counters since start (V1), or a ready-made rate (V0).
_PREFIX_COUNTERS = (
    ("vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total"),
    ("vllm:gpu_prefix_cache_hits_total", "vllm:gpu_prefix_cache_queries_total"),
)
_PREFIX_RATE = ("vllm:gpu_prefix_cache_hit_rate", "sglang:cache_hit_rate")
_WANTED = frozenset(
    (*_WAITING, *_RUNNING, *_KV_USAGE, *_PREFIX_RATE, *(n for p in _PREFIX_COUNTERS for n in p))
)
_WANTED_PREFIXES = tuple(sorted(_WANTED))


class MetricsParseError(ValueError):
    """The text is not Prometheus exposition format."""


def parse_metrics(text: str) -> Metrics | None:
    """The engine metrics in `text`, or None when it has none this gateway knows
    (Ollama, llama-cpp-python, a plain web server). Raises MetricsParseError on text
    that is not Prometheus exposition format at all."""
    # vLLM's page is ~50 kB, mostly histograms; parsing it whole takes over 10 ms of the
    # event loop per replica per scrape. Only the lines of the wanted series are parsed,
    # unless none is there: then the whole text, to tell garbage from a foreign exporter.
    values = _collect(_wanted_lines(text)) or _collect(text)

    waiting = _first(values, _WAITING, _sum)
    running = _first(values, _RUNNING, _sum)
    if waiting is None and running is None:
        return None
    return Metrics(
        waiting=waiting or 0.0,
        running=running or 0.0,
        kv_usage=_first(values, _KV_USAGE, _mean),
        prefix_hit_rate=_prefix_hit_rate(values),
    )


def _wanted_lines(text: str) -> str:
    """The HELP, TYPE and sample lines of the wanted series (str.find runs at C speed)."""
    starts = set()
    for name in _WANTED:
        at = text.find(name)
        while at >= 0:
            starts.add(text.rfind("\n", 0, at) + 1)
            at = text.find(name, at + len(name))
    kept = []
    for start in sorted(starts):
        end = text.find("\n", start)
        line = text[start : len(text) if end < 0 else end]
        name = line[7:] if line.startswith(("# HELP ", "# TYPE ")) else line
        if name.startswith(_WANTED_PREFIXES):
            kept.append(line)
    return "\n".join(kept) + "\n" if kept else ""


def _collect(text: str) -> dict[str, list[float]]:
    """Every finite value of the wanted samples, by sample name, over all label sets."""
    values: dict[str, list[float]] = defaultdict(list)
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in _WANTED and math.isfinite(sample.value):
                    values[sample.name].append(float(sample.value))
    # The parser raises ValueError, IndexError, KeyError... on malformed lines.
    except Exception as exc:
        raise MetricsParseError(f"not Prometheus text: {exc}") from exc
    return values


def _sum(xs: list[float]) -> float:
    return float(sum(xs))


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def _first(
    values: dict[str, list[float]],
    names: tuple[str, ...],
    combine: Callable[[list[float]], float],
) -> float | None:
    for name in names:
        if values.get(name):
            return combine(values[name])
    return None


def _prefix_hit_rate(values: dict[str, list[float]]) -> float | None:
    for hits_name, queries_name in _PREFIX_COUNTERS:
        if values.get(queries_name):
            queries = sum(values[queries_name])
            hits = sum(values.get(hits_name, ()))
            # Since the server started: a replica that has served nothing has no rate.
            return hits / queries if queries > 0 else None
    return _first(values, _PREFIX_RATE, _mean)
