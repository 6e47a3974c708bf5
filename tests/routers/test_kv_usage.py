from collections import Counter

from routers import RouteRequest
from routers.kv_usage import KVUsage
from tests.routers.views import view

REQ = RouteRequest(model="m")


def test_the_emptiest_cache_wins() -> None:
    candidates = [
        view("a", waiting=0, running=10, kv_usage=0.6, in_flight=10),
        view("b", waiting=0, running=10, kv_usage=0.2, in_flight=10),
    ]
    assert KVUsage(seed=0).choose(REQ, candidates).id == "b"  # type: ignore[union-attr]


def test_requests_sent_since_the_scrape_fill_the_cache_they_were_sent_to() -> None:
    # Both scraped at 10 running; "b" looked emptier (0.2 against 0.3), but 4 more went
    # there since, at the fleet's 0.025 a request: it stands at 0.3 + a bit now.
    strategy = KVUsage(seed=0)
    sent = {"a": 0, "b": 0}
    usage = {"a": 0.3, "b": 0.2}
    for _ in range(20):
        candidates = [
            view(
                r,
                waiting=0,
                running=10,
                kv_usage=usage[r],
                in_flight=10 + n,
                in_flight_at_scrape=10,
            )
            for r, n in sent.items()
        ]
        sent[strategy.choose(REQ, candidates).id] += 1  # type: ignore[union-attr]
    # 0.1 of difference is 4 requests' worth: "b" takes those, then they alternate.
    assert sent["b"] - sent["a"] == 4


def test_finished_requests_free_what_they_held() -> None:
    candidates = [
        view("a", waiting=0, running=10, kv_usage=0.5, in_flight=2, in_flight_at_scrape=10),
        view("b", waiting=0, running=10, kv_usage=0.4, in_flight=10, in_flight_at_scrape=10),
    ]
    assert KVUsage(seed=0).choose(REQ, candidates).id == "a"  # type: ignore[union-attr]


def test_without_a_usage_figure_or_a_fresh_scrape_in_flight_decides() -> None:
    no_figure = [view("a", waiting=0, in_flight=1), view("b", waiting=0, kv_usage=0.0, in_flight=5)]
    assert KVUsage(seed=0).choose(REQ, no_figure).id == "a"  # type: ignore[union-attr]
    stale = [
        view("a", waiting=0, kv_usage=0.9, in_flight=1),
        view("b", waiting=0, kv_usage=0.1, in_flight=5, stale=True),
    ]
    assert KVUsage(seed=0).choose(REQ, stale).id == "a"  # type: ignore[union-attr]


def test_equal_usage_goes_to_fewer_in_flight_then_at_random() -> None:
    strategy = KVUsage(seed=0)
    candidates = [
        view("a", waiting=0, running=4, kv_usage=0.1, in_flight=4, in_flight_at_scrape=4),
        view("b", waiting=0, running=4, kv_usage=0.1, in_flight=4, in_flight_at_scrape=4),
    ]
    picks = Counter(strategy.choose(REQ, candidates).id for _ in range(100))  # type: ignore[union-attr]
    assert set(picks) == {"a", "b"}
