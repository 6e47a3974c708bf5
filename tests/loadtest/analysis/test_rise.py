"""Whether TTFT was still rising at a run's end (`loadtest.analysis.rise`)."""

import random

import pytest

from loadtest.analysis.rise import Rise, ttft_rise
from loadtest.drive.records import RequestRecord


def run(ttfts: list[float | None], model: str = "m") -> list[RequestRecord]:
    """Records sent one a second in this order, listed shuffled (the order must not matter)."""
    records = [
        RequestRecord(
            index=i,
            model=model,
            scheduled_s=float(i),
            sent_s=float(i),
            lag_s=0.0,
            status=200 if ttft is not None else 0,
            ttft_s=ttft,
        )
        for i, ttft in enumerate(ttfts)
    ]
    random.Random(1).shuffle(records)
    return records


def test_a_steady_run_is_not_rising_whatever_its_spread() -> None:
    rng = random.Random(2)
    rise = ttft_rise(run([rng.lognormvariate(-2, 1) for _ in range(1000)]))
    assert rise is not None and 0.8 < rise.ratio < 1.2 and not rise.rising


def test_a_queue_that_grows_is_rising_and_by_how_much() -> None:
    # TTFT 0.1 s in the first two fifths, then growing by 1 ms a request.
    ttfts = [0.1 if i < 400 else 0.1 + (i - 400) * 0.001 for i in range(1000)]
    rise = ttft_rise(run(ttfts))
    # The last fifth's median lies between requests 899 and 900: 0.5995 s.
    assert rise == Rise("m", pytest.approx(0.1), pytest.approx(0.5995))
    assert rise is not None and rise.rising


def test_the_model_that_rises_is_found_among_steady_ones() -> None:
    steady = run([0.1] * 3000, "big")
    growing = run([0.1 if i < 400 else 0.1 + (i - 400) * 0.001 for i in range(1000)], "small")
    rise = ttft_rise(steady + growing)
    assert rise is not None and rise.model == "small" and rise.rising
    # Too few requests of a model to judge it: the others are judged alone.
    few = run([0.1 if i < 40 else 5.0 for i in range(100)], "rare")
    assert ttft_rise(steady + few) == Rise("big", 0.1, 0.1)


def test_a_few_milliseconds_more_is_not_a_queue_even_if_it_doubles() -> None:
    rise = ttft_rise(run([0.002 if i < 400 else 0.006 for i in range(1000)]))
    assert rise is not None and rise.ratio == 3 and not rise.rising


def test_the_first_fifth_where_queues_fill_is_left_out() -> None:
    rise = ttft_rise(run([0.5 if i < 200 else 0.1 for i in range(1000)]))
    assert rise is not None and rise.ratio == 1.0


def test_failures_count_as_slow() -> None:
    # Two thirds of the last fifth get no first token: its median is a failure.
    ttfts: list[float | None] = [0.1] * 1000
    for i in range(800, 1000):
        if i % 3:
            ttfts[i] = None
    rise = ttft_rise(run(ttfts))
    assert rise is not None and rise.rising


def test_too_few_requests_or_a_failed_second_fifth_give_no_verdict() -> None:
    assert ttft_rise(run([0.1] * 249)) is None
    assert ttft_rise(run([0.0] * 1000)) is None
    assert ttft_rise(run([None] * 1000)) is None
