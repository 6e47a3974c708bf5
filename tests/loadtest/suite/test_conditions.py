"""Stop conditions and search targets: each limit, crossed or not, named in words."""

from loadtest.suite.conditions import Conditions

OK = {
    "error_rate": 0.0,
    "ttft_p99_s": 0.3,
    "goodput_rps": 10.0,
    "goodput_fraction": 1.0,
    "offered_rps": 10.0,
    "served_rps": 10.1,
    "served_ratio": 1.01,
}


def test_nothing_given_passes_anything() -> None:
    assert Conditions().failed({**OK, "error_rate": 1.0, "ttft_p99_s": 99.0}) is None


def test_each_limit_is_named_when_crossed() -> None:
    every = Conditions(0.05, 1.0, 0.2, 0.9, 0.95)
    assert every.failed(OK, [OK]) is None
    assert every.failed({**OK, "error_rate": 0.1}) == "error rate 10.0% > 5.0%"
    assert every.failed({**OK, "ttft_p99_s": 1.5}) == "TTFT p99 1.5 s > 1 s"
    assert every.failed({**OK, "ttft_p99_s": None}) == "no request got a first token"
    slow = {**OK, "served_rps": 8.0, "served_ratio": 0.8}
    assert every.failed(slow) == ("served 8 req/s, 0.80 of the offered 10 (< 0.9): a queue grows")
    assert every.failed({**OK, "goodput_fraction": 0.5}) == (
        "50.0% of requests met the SLOs (< 95%)"
    )
    falling = {**OK, "goodput_rps": 7.0}
    assert every.failed(falling, [OK, {**OK, "goodput_rps": 12.0}]) == (
        "goodput 7 req/s, 42% below the best so far (12)"
    )
    # Within 20% of the best: still fine.
    assert every.failed({**OK, "goodput_rps": 10.0}, [{**OK, "goodput_rps": 12.0}]) is None


def test_closed_loop_points_have_no_offered_rate_to_fall_behind() -> None:
    closed = {**OK, "offered_rps": None, "served_ratio": None}
    assert Conditions(served_ratio=0.9).failed(closed) is None


def test_describe_lists_the_limits_given() -> None:
    assert Conditions(error_rate=0.05, ttft_p99=2.0).describe() == (
        "error rate above 5%, TTFT p99 above 2 s"
    )
