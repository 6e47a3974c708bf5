import random
from email.utils import formatdate

import pytest

from loadtest.batch.retry import RetryPolicy, parse_retry_after


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(b"3", 3.0), (b" 0.5 ", 0.5), (b"-2", 0.0), (b"soon", None), (b"nan", None), (None, None)],
)
def test_retry_after_in_seconds(value: bytes | None, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds


def test_retry_after_as_an_http_date() -> None:
    now = 1_800_000_000.0
    value = formatdate(now + 30, usegmt=True).encode()
    assert parse_retry_after(value, now=now) == pytest.approx(30.0)
    assert parse_retry_after(formatdate(now - 30, usegmt=True).encode(), now=now) == 0.0


def test_backoff_doubles_up_to_its_cap_with_jitter_below_each_ceiling() -> None:
    policy = RetryPolicy(backoff_base_s=1.0, backoff_max_s=8.0)
    rng = random.Random(1)
    for attempts, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        waits = [policy.delay(attempts, None, rng) for _ in range(200)]
        assert ceiling / 2 <= min(waits) and max(waits) <= ceiling
        assert max(waits) - min(waits) > ceiling / 4  # jittered, not fixed


def test_retry_after_is_never_shortened() -> None:
    policy = RetryPolicy(backoff_max_s=0.1)
    rng = random.Random(2)
    waits = [policy.delay(1, 20.0, rng) for _ in range(100)]
    assert min(waits) >= 20.0 and max(waits) <= 21.0


def test_which_statuses_are_sent_again() -> None:
    policy = RetryPolicy()
    again = [
        s
        for s in (200, 400, 401, 404, 408, 409, 422, 429, 500, 502, 503, 504)
        if policy.retryable_status(s)
    ]
    assert again == [408, 409, 429, 500, 502, 503, 504]
