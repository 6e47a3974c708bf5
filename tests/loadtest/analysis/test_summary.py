from dataclasses import replace

import pytest

from loadtest.analysis.summary import Percentiles, summarize
from loadtest.drive.records import RequestRecord
from loadtest.workload import Slo, Warmup
from tests.loadtest.helpers import small_workload


def record(index: int, **fields: object) -> RequestRecord:
    base = RequestRecord(
        index=index,
        model="m",
        scheduled_s=float(index),
        sent_s=float(index),
        lag_s=0.001,
        status=200,
        ttft_s=0.1,
        itl_s=(0.02, 0.02, 0.02),
        tpot_s=0.02,
        e2e_s=1.0,
        prompt_tokens=100,
        output_tokens=4,
        replica="r0",
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def test_percentiles_of_a_known_sample() -> None:
    stats = Percentiles.of(float(v) for v in range(1, 101))
    assert (stats.p50, stats.max, stats.mean, stats.count) == (50.5, 100.0, 50.5, 100)
    assert stats.p90 == pytest.approx(90.1)
    assert stats.p99 == pytest.approx(99.01)
    assert Percentiles.of([]) == Percentiles()


def test_throughput_goodput_errors_and_spread() -> None:
    workload = small_workload(slo=Slo(ttft_s=0.5, tpot_s=0.05))
    records = [
        record(0, replica="r0"),
        record(1, replica="r1", ttft_s=0.9),  # misses the TTFT target
        record(2, replica="r0", tpot_s=0.08),  # misses the TPOT target
        record(3, replica="r1"),
        record(
            4,
            status=500,
            error_kind="http_5xx",
            ttft_s=None,
            itl_s=(),
            tpot_s=None,
            e2e_s=None,
            output_tokens=None,
        ),
    ]
    summary = summarize(records, workload)
    # Window: first send at 0 s, last end at 3 + 1 s (the failed one ends when sent, at 4 s).
    assert summary.window_s == pytest.approx(4.0)
    assert (summary.requests, summary.ok, summary.errors) == (5, 4, 1)
    assert summary.error_rate == pytest.approx(0.2)
    assert summary.throughput_rps == pytest.approx(1.0)
    assert summary.output_tokens_per_s == pytest.approx(4.0)
    assert summary.goodput_rps == pytest.approx(0.5)
    assert summary.goodput_fraction == pytest.approx(0.4)
    assert summary.ttft.max == pytest.approx(0.9)
    assert summary.itl.count == 12
    assert summary.replicas == (("r0", 2), ("r1", 2))
    assert summary.replica_cv == 0.0
    assert summary.replica_max_share == 0.5
    assert summary.errors_by_kind == (("http_5xx", 1),)
    flat = summary.to_dict()
    assert flat["ttft_p99_s"] == summary.ttft.p99
    assert flat["replicas_used"] == 2
    assert all(isinstance(v, int | float) or v is None for v in flat.values())


def test_warmup_is_excluded_but_never_more_than_half() -> None:
    records = [record(i) for i in range(10)]
    by_count = summarize(records, small_workload(warmup=Warmup(requests=3)))
    assert (by_count.requests, by_count.warmup_excluded) == (7, 3)
    by_time = summarize(records, small_workload(warmup=Warmup(seconds=2.5)))
    assert by_time.requests == 7  # scheduled at 0, 1 and 2 s are warm-up
    everything = summarize(records, small_workload(warmup=Warmup(seconds=100)))
    assert (everything.requests, everything.warmup_excluded) == (5, 5)


def test_uneven_spread() -> None:
    records = [record(i, replica="a") for i in range(3)] + [record(3, replica="b")]
    summary = summarize(records, small_workload())
    assert summary.replica_max_share == 0.75
    assert summary.replica_cv == pytest.approx(0.5)


def test_per_model_summaries_split_the_measured_requests() -> None:
    from loadtest.analysis.summary import summarize_by_model

    records = [record(i, model="big" if i % 3 == 0 else "small") for i in range(9)]
    records[3] = replace(records[3], ttft_s=0.7)
    parts = summarize_by_model(records, small_workload(warmup=Warmup(requests=3)))
    assert set(parts) == {"big", "small"}
    assert parts["big"].requests == 2  # indexes 3 and 6; 0 is warm-up
    assert parts["small"].requests == 4
    assert parts["big"].ttft.max == 0.7


def test_visible_text_variants_and_prompt_tokens_served() -> None:
    """Chunk 1 of request 0 had no text: the visible variant joins its two gaps."""
    records = [
        record(0, blank_chunks=(1,), requested_prompt_tokens=100),
        record(1, requested_prompt_tokens=90, prompt_tokens=99),
        record(2, requested_prompt_tokens=None),  # no schedule length known: left out
    ]
    summary = summarize(records, small_workload())
    assert summary.itl.count == 9
    assert summary.itl_visible.count == 8
    assert summary.itl_visible.max == pytest.approx(0.04)
    assert summary.ttft_visible.p50 == pytest.approx(0.1)
    assert (summary.prompt_tokens_requested, summary.prompt_tokens_served) == (190, 199)
    flat = summary.to_dict()
    assert flat["prompt_tokens_served_ratio"] == pytest.approx(199 / 190)
    assert flat["itl_visible_max_s"] == pytest.approx(0.04)
