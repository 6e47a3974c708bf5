"""Prometheus text from an inference server's /metrics, reduced to what strategies use.

Pure: text in, `Metrics` out. Each engine's names are in `ENGINES` (vLLM across versions,
SGLang, llama.cpp's llama-server); a caller that knows the engine reads only its names,
one that does not reads them all. Count gauges are summed over every label set (vLLM
labels each engine, SGLang each data-parallel rank); usage fractions are averaged over
them, since a sum of fractions means nothing. Only the exact sample names below are
read, so the `_created` series vLLM exports beside every counter never count, and only
their lines are handed to prometheus-client's parser (see `parse_metrics`).
"""

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from routers import Metrics


@dataclass(frozen=True)
class EngineNames:
    """One engine's sample names for each field, newest first; the first one present wins."""

    waiting: tuple[str, ...]
    running: tuple[str, ...]
    kv_usage: tuple[str, ...] = ()
    # Prefix cache: (hits, queries) counters since start, or a ready-made rate.
    prefix_counters: tuple[tuple[str, str], ...] = ()
    prefix_rate: tuple[str, ...] = ()

    def all_names(self) -> frozenset[str]:
        pairs = (name for pair in self.prefix_counters for name in pair)
        return frozenset((*self.waiting, *self.running, *self.kv_usage, *pairs, *self.prefix_rate))


ENGINES: dict[str, EngineNames] = {
    # vllm/v1/metrics/loggers.py; kv_cache_usage_perc replaced gpu_cache_usage_perc in 0.9
    # (vllm-project/vllm PR #30041 deprecates the old name).
    "vllm": EngineNames(
        waiting=("vllm:num_requests_waiting",),
        running=("vllm:num_requests_running",),
        kv_usage=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
        prefix_counters=(
            ("vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total"),
            ("vllm:gpu_prefix_cache_hits_total", "vllm:gpu_prefix_cache_queries_total"),
        ),
        prefix_rate=("vllm:gpu_prefix_cache_hit_rate",),
    ),
    # sgl-project/sglang python/sglang/srt/metrics/collector.py (needs --enable-metrics).
    # sglang:cache_hit_rate is reset to 0 at every decode log, so the counters come first.
    "sglang": EngineNames(
        waiting=("sglang:num_queue_reqs",),
        running=("sglang:num_running_reqs",),
        kv_usage=("sglang:token_usage",),
        prefix_counters=(("sglang:cached_tokens_total", "sglang:prompt_tokens_total"),),
        prefix_rate=("sglang:cache_hit_rate",),
    ),
    # ggml-org/llama.cpp tools/server/README.md (needs --metrics; no labels). Current
    # builds have no KV gauge: kv_cache_usage_ratio was removed by PR #13660 and is read
    # only from older builds.
    "llamacpp": EngineNames(
        waiting=("llamacpp:requests_deferred",),
        running=("llamacpp:requests_processing",),
        kv_usage=("llamacpp:kv_cache_usage_ratio",),
    ),
}


def _merged(engines: dict[str, EngineNames]) -> EngineNames:
    parts = list(engines.values())
    return EngineNames(
        waiting=tuple(n for e in parts for n in e.waiting),
        running=tuple(n for e in parts for n in e.running),
        kv_usage=tuple(n for e in parts for n in e.kv_usage),
        prefix_counters=tuple(p for e in parts for p in e.prefix_counters),
        prefix_rate=tuple(n for e in parts for n in e.prefix_rate),
    )


# For a server whose engine is not known: every engine's names.
ANY_ENGINE = _merged(ENGINES)


class MetricsParseError(ValueError):
    """The text is not Prometheus exposition format."""


def parse_metrics(text: str, engine: str | None = None) -> Metrics | None:
    """The engine metrics in `text`, or None when it has none this gateway knows
    (Ollama, llama-cpp-python, a plain web server). `engine` (a key of ENGINES) reads
    that engine's names only; None reads every engine's. Raises MetricsParseError on
    text that is not Prometheus exposition format at all."""
    names = ANY_ENGINE if engine is None else ENGINES[engine]
    wanted = names.all_names()
    # vLLM's page is ~50 kB, mostly histograms; parsing it whole takes over 10 ms of the
    # event loop per replica per scrape. Only the lines of the wanted series are parsed,
    # unless none is there: then the whole text, to tell garbage from a foreign exporter.
    values = _collect(_wanted_lines(text, wanted), wanted) or _collect(text, wanted)

    waiting = _first(values, names.waiting, _sum)
    running = _first(values, names.running, _sum)
    if waiting is None and running is None:
        return None
    return Metrics(
        waiting=waiting or 0.0,
        running=running or 0.0,
        kv_usage=_first(values, names.kv_usage, _mean),
        prefix_hit_rate=_prefix_hit_rate(values, names),
    )


def _wanted_lines(text: str, wanted: frozenset[str] = ANY_ENGINE.all_names()) -> str:
    """The HELP, TYPE and sample lines of the wanted series (str.find runs at C speed)."""
    prefixes = tuple(sorted(wanted))
    starts = set()
    for name in wanted:
        at = text.find(name)
        while at >= 0:
            starts.add(text.rfind("\n", 0, at) + 1)
            at = text.find(name, at + len(name))
    kept = []
    for start in sorted(starts):
        end = text.find("\n", start)
        line = text[start : len(text) if end < 0 else end]
        name = line[7:] if line.startswith(("# HELP ", "# TYPE ")) else line
        if name.startswith(prefixes):
            kept.append(line)
    return "\n".join(kept) + "\n" if kept else ""


def _collect(text: str, wanted: frozenset[str]) -> dict[str, list[float]]:
    """Every finite value of the wanted samples, by sample name, over all label sets.

    Series that differ only in `tp_rank` count once: with --enable-metrics-for-all-schedulers
    SGLang repeats each data-parallel rank's figures on every tensor-parallel rank, and
    summing them would count each request tp_size times."""
    values: dict[str, list[float]] = defaultdict(list)
    seen: set[tuple[str, frozenset[tuple[str, str]]]] = set()
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name not in wanted or not math.isfinite(sample.value):
                    continue
                if "tp_rank" in sample.labels:
                    key = (
                        sample.name,
                        frozenset((k, v) for k, v in sample.labels.items() if k != "tp_rank"),
                    )
                    if key in seen:
                        continue
                    seen.add(key)
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


def _prefix_hit_rate(values: dict[str, list[float]], names: EngineNames) -> float | None:
    for hits_name, queries_name in names.prefix_counters:
        if values.get(queries_name) and values.get(hits_name):
            queries = sum(values[queries_name])
            hits = sum(values[hits_name])
            # Since the server started: a replica that has served nothing has no rate.
            return hits / queries if queries > 0 else None
    return _first(values, names.prefix_rate, _mean)
