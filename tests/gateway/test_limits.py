"""Per-key rate (token bucket) and concurrency, and the global cap, on a fake clock."""

import pytest

from gateway.errors import RateLimited
from gateway.keys import ClientKey
from gateway.limits import Limits


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_allows_a_burst_then_one_request_per_interval() -> None:
    clock = Clock()
    limits = Limits(clock=clock)
    key = ClientKey("team", rate=2.0, burst=3.0)
    for _ in range(3):
        limits.release(limits.admit(key))
    with pytest.raises(RateLimited) as caught:
        limits.admit(key)
    assert caught.value.status == 429
    assert caught.value.limit == "rate"
    assert caught.value.headers == {"retry-after": "1"}
    assert caught.value.body().startswith(b'{"error":{"message":"key \'team\' is over its rate')
    clock.now += 0.5  # one token back at 2 per second
    limits.release(limits.admit(key))
    with pytest.raises(RateLimited):
        limits.admit(key)
    clock.now += 100  # refills to the burst, never beyond
    for _ in range(3):
        limits.release(limits.admit(key))
    with pytest.raises(RateLimited):
        limits.admit(key)


def test_retry_after_is_the_wait_for_the_next_token_rounded_up() -> None:
    limits = Limits(clock=Clock())
    key = ClientKey("slow", rate=0.1, burst=1.0)
    limits.admit(key)
    with pytest.raises(RateLimited) as caught:
        limits.admit(key)
    assert caught.value.headers["retry-after"] == "10"


def test_concurrency_counts_open_requests_per_key() -> None:
    limits = Limits(clock=Clock())
    a, b = ClientKey("a", concurrency=2), ClientKey("b", concurrency=1)
    first, second = limits.admit(a), limits.admit(a)
    with pytest.raises(RateLimited) as caught:
        limits.admit(a)
    assert caught.value.limit == "concurrency"
    other = limits.admit(b)  # another key's budget is its own
    limits.release(first)
    third = limits.admit(a)
    for state in (second, third, other):
        limits.release(state)
    assert limits.open == 0
    assert limits.state("a") is not None and limits.state("a").open == 0  # type: ignore[union-attr]


def test_global_cap_counts_every_key() -> None:
    limits = Limits(global_cap=2, clock=Clock())
    held = [limits.admit(ClientKey("a")), limits.admit(ClientKey("b"))]
    with pytest.raises(RateLimited) as caught:
        limits.admit(ClientKey("c"))
    assert caught.value.limit == "global"
    limits.release(held.pop())
    limits.release(limits.admit(ClientKey("c")))
