from pathlib import Path

import pytest

from routers import Metrics
from turnout.engine_metrics import MetricsParseError, _wanted_lines, parse_metrics

FIXTURES = Path(__file__).parent.parent / "fixtures"


def test_real_vllm_0_32_scrape() -> None:
    # Scraped while 8 requests ran and 4 waited; the `_created` gauges beside every
    # counter and `num_requests_waiting_by_reason` must not leak into the figures.
    text = (FIXTURES / "vllm-0.32.0-metrics.txt").read_text()
    metrics = parse_metrics(text)
    assert metrics is not None
    assert metrics.waiting == 4.0
    assert metrics.running == 8.0
    assert metrics.kv_usage == pytest.approx(0.0019533634476864847)
    assert metrics.prefix_hit_rate == 0.0  # 0 hits out of 426 queried tokens


V1_TWO_ENGINES = """\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
vllm:num_requests_running{engine="1",model_name="m"} 5.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 2.0
vllm:num_requests_waiting{engine="1",model_name="m"} 7.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.2
vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.6
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0",model_name="m"} 100.0
vllm:prefix_cache_queries_total{engine="1",model_name="m"} 300.0
# TYPE vllm:prefix_cache_queries_created gauge
vllm:prefix_cache_queries_created{engine="0",model_name="m"} 1.7e+09
vllm:prefix_cache_queries_created{engine="1",model_name="m"} 1.7e+09
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{engine="0",model_name="m"} 50.0
vllm:prefix_cache_hits_total{engine="1",model_name="m"} 50.0
# TYPE vllm:prefix_cache_hits_created gauge
vllm:prefix_cache_hits_created{engine="0",model_name="m"} 1.7e+09
vllm:prefix_cache_hits_created{engine="1",model_name="m"} 1.7e+09
"""


def test_counts_sum_over_engines_and_fractions_average() -> None:
    assert parse_metrics(V1_TWO_ENGINES) == Metrics(
        waiting=9.0, running=8.0, kv_usage=pytest.approx(0.4), prefix_hit_rate=0.25
    )


V0 = """\
# HELP vllm:num_requests_running Number of requests currently running on GPU.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="llama"} 4.0
# TYPE vllm:num_requests_swapped gauge
vllm:num_requests_swapped{model_name="llama"} 0.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="llama"} 11.0
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="llama"} 0.93
# TYPE vllm:cpu_cache_usage_perc gauge
vllm:cpu_cache_usage_perc{model_name="llama"} 0.5
# TYPE vllm:gpu_prefix_cache_hit_rate gauge
vllm:gpu_prefix_cache_hit_rate{model_name="llama"} 0.37
"""


def test_pre_0_9_vllm_names() -> None:
    assert parse_metrics(V0) == Metrics(
        waiting=11.0, running=4.0, kv_usage=0.93, prefix_hit_rate=0.37
    )


EARLY_V1 = """\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 1.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 0.0
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.1
# TYPE vllm:gpu_prefix_cache_queries counter
vllm:gpu_prefix_cache_queries_total{engine="0",model_name="m"} 80.0
# TYPE vllm:gpu_prefix_cache_hits counter
vllm:gpu_prefix_cache_hits_total{engine="0",model_name="m"} 60.0
"""


def test_early_v1_prefix_cache_counters() -> None:
    metrics = parse_metrics(EARLY_V1)
    assert metrics is not None
    assert metrics.kv_usage == 0.1
    assert metrics.prefix_hit_rate == 0.75


def test_new_names_win_over_deprecated_ones_served_beside_them() -> None:
    both = V1_TWO_ENGINES + (
        "# TYPE vllm:gpu_cache_usage_perc gauge\n"
        'vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.99\n'
    )
    metrics = parse_metrics(both)
    assert metrics is not None and metrics.kv_usage == pytest.approx(0.4)


def test_prefix_hit_rate_unknown_before_any_query() -> None:
    text = (
        "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting 0\n"
        "# TYPE vllm:prefix_cache_queries counter\nvllm:prefix_cache_queries_total 0\n"
        "# TYPE vllm:prefix_cache_hits counter\nvllm:prefix_cache_hits_total 0\n"
    )
    metrics = parse_metrics(text)
    assert metrics is not None and metrics.prefix_hit_rate is None


SGLANG = """\
# HELP sglang:num_running_reqs The number of running requests.
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="meta-llama/Llama-3.1-8B-Instruct"} 12.0
# HELP sglang:num_queue_reqs The number of requests in the waiting queue.
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{model_name="meta-llama/Llama-3.1-8B-Instruct"} 3.0
# HELP sglang:token_usage The token usage.
# TYPE sglang:token_usage gauge
sglang:token_usage{model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.28
# HELP sglang:cache_hit_rate The prefix cache hit rate.
# TYPE sglang:cache_hit_rate gauge
sglang:cache_hit_rate{model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.5
# HELP sglang:prompt_tokens_total Number of prefill tokens processed.
# TYPE sglang:prompt_tokens_total counter
sglang:prompt_tokens_total{model_name="meta-llama/Llama-3.1-8B-Instruct"} 8.128902e+06
"""


def test_sglang() -> None:
    assert parse_metrics(SGLANG) == Metrics(
        waiting=3.0, running=12.0, kv_usage=0.28, prefix_hit_rate=0.5
    )


LLAMA_CPP = """\
# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 120
# HELP llamacpp:requests_processing Number of requests processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 2
# HELP llamacpp:requests_deferred Number of requests deferred.
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 6
"""


def test_llama_cpp() -> None:
    assert parse_metrics(LLAMA_CPP) == Metrics(waiting=6.0, running=2.0)


OLLAMA_LIKE = """\
# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 4.5
# TYPE python_info gauge
python_info{implementation="CPython",major="3",minor="11"} 1.0
"""


@pytest.mark.parametrize("text", ["", "\n", OLLAMA_LIKE], ids=["empty", "blank", "no-engine"])
def test_nothing_known_is_none(text: str) -> None:
    assert parse_metrics(text) is None


def test_only_running_known_still_counts_waiting_as_zero() -> None:
    text = "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 5\n"
    assert parse_metrics(text) == Metrics(waiting=0.0, running=5.0)


def test_non_finite_values_are_ignored() -> None:
    text = (
        "# TYPE vllm:num_requests_waiting gauge\n"
        'vllm:num_requests_waiting{engine="0"} NaN\n'
        'vllm:num_requests_waiting{engine="1"} 2\n'
        "# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc +Inf\n"
    )
    assert parse_metrics(text) == Metrics(waiting=2.0, running=0.0, kv_usage=None)


def test_only_the_wanted_series_are_read() -> None:
    # A broken line of a series nobody reads does not spoil the ones we need.
    text = V1_TWO_ENGINES + 'vllm:e2e_request_latency_seconds_bucket{le="0.3" oops\n'
    metrics = parse_metrics(text)
    assert metrics is not None and metrics.waiting == 9.0


@pytest.mark.parametrize(
    "text",
    [
        "<html><body><h1>502 Bad Gateway</h1></body></html>",
        "hello world",
        '{"detail": "Not Found"}',
        'vllm:num_requests_waiting{engine="0" 4.0',
        "vllm:num_requests_waiting four",
        "\x00\xff\xfe",
        V1_TWO_ENGINES + 'vllm:num_requests_waiting{engine="',  # cut off mid-line
    ],
    ids=["html", "words", "json", "unclosed-labels", "bad-value", "binary", "truncated"],
)
def test_garbage_raises_one_known_error(text: str) -> None:
    with pytest.raises(MetricsParseError, match="not Prometheus text"):
        parse_metrics(text)


def test_a_vllm_page_is_parsed_from_its_few_wanted_lines() -> None:
    # The histograms that make up most of vLLM's page are never handed to the parser.
    text = (FIXTURES / "vllm-0.32.0-metrics.txt").read_text()
    kept = _wanted_lines(text).splitlines()
    assert 5 <= len(kept) <= 20
    assert not any("_bucket" in line or "_created" in line for line in kept)
    assert 'vllm:num_requests_waiting{engine="0",model_name="tiny"} 4.0' in kept


def sglang_series(name: str, value: float, dp: int, tp: int) -> str:
    labels = f'dp_rank="{dp}",engine_type="unified",model_name="m",pp_rank="0",tp_rank="{tp}"'
    return f"sglang:{name}{{{labels}}} {value}\n"


def test_sglang_counts_each_data_parallel_rank_once() -> None:
    # --enable-metrics-for-all-schedulers: every TP rank repeats its DP rank's figures.
    text = "# TYPE sglang:num_queue_reqs gauge\n# TYPE sglang:num_running_reqs gauge\n"
    for dp, (queued, running) in enumerate([(2, 5), (4, 1)]):
        for tp in (0, 1):
            text += sglang_series("num_queue_reqs", queued, dp, tp)
            text += sglang_series("num_running_reqs", running, dp, tp)
    assert parse_metrics(text, "sglang") == Metrics(waiting=6.0, running=6.0)


def test_sglang_hit_rate_comes_from_its_counters_not_the_gauge_reset_at_decode() -> None:
    text = SGLANG + (
        "# TYPE sglang:cached_tokens counter\n"
        'sglang:cached_tokens_total{model_name="meta-llama/Llama-3.1-8B-Instruct"} 2.032e+06\n'
    )
    metrics = parse_metrics(text, "sglang")
    assert metrics is not None and metrics.prefix_hit_rate == pytest.approx(0.25, rel=1e-3)


def test_a_known_engine_reads_its_own_names_only() -> None:
    assert parse_metrics(SGLANG, "vllm") is None
    assert parse_metrics(LLAMA_CPP, "llamacpp") == Metrics(waiting=6.0, running=2.0)
    assert parse_metrics(V1_TWO_ENGINES, "sglang") is None
