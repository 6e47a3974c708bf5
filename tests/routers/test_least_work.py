import random

from routers import RouteRequest
from routers.least_work import LeastWork
from tests.routers.views import view

REQ = RouteRequest(model="m", prompt_tokens_estimate=500)


def pick(strategy: LeastWork, *candidates: object) -> str:
    choice = strategy.choose(REQ, candidates)  # type: ignore[arg-type]
    assert choice is not None
    return choice.id


def test_queued_prompt_tokens_count_not_requests() -> None:
    # "a" has one request waiting for its first byte, with a long prompt; "b" three short.
    a = view("a", waiting=0, running=1, in_flight=1, awaiting=1, awaiting_tokens=8000)
    b = view("b", waiting=0, running=3, in_flight=3, awaiting=3, awaiting_tokens=900)
    assert pick(LeastWork(seed=0), a, b) == "b"


def test_with_no_prefill_queued_the_smaller_batch_wins() -> None:
    a = view("a", waiting=0, running=40, in_flight=40)
    b = view("b", waiting=0, running=10, in_flight=10)
    assert pick(LeastWork(seed=0), a, b) == "b"


def test_a_long_queue_outweighs_a_big_batch() -> None:
    # 30 more sequences decoding on "a" is 120 prompt tokens at the default weight:
    # less than the 2,000 queued on "b".
    a = view("a", waiting=0, running=40, in_flight=40)
    b = view("b", waiting=0, running=10, in_flight=10, awaiting=1, awaiting_tokens=2000)
    assert pick(LeastWork(seed=0), a, b) == "a"
    assert pick(LeastWork(decode_weight=100, seed=0), a, b) == "b"


def test_another_senders_load_seen_in_the_scrape_counts() -> None:
    # Both have 5 of ours in flight; the scrape of "a" shows 30 more from elsewhere.
    a = view("a", waiting=5, running=30, in_flight_at_scrape=5, in_flight=5)
    b = view("b", waiting=0, running=5, in_flight_at_scrape=5, in_flight=5)
    assert pick(LeastWork(seed=0), a, b) == "b"


def test_stale_scrapes_fall_back_to_local_counts_for_all() -> None:
    # "a"'s fresh scrape shows others' load; "b" is stale, so only our own counts compare.
    a = view("a", waiting=5, running=30, in_flight_at_scrape=0, in_flight=2)
    b = view("b", waiting=0, stale=True, in_flight=6)
    assert pick(LeastWork(seed=0), a, b) == "a"


def test_a_burst_between_scrapes_spreads_by_what_was_sent() -> None:
    strategy = LeastWork(seed=3)
    sent = {"a": 0, "b": 0, "c": 0}
    for _ in range(30):
        views = [
            view(r, waiting=0, in_flight=n, awaiting=n, awaiting_tokens=500 * n)
            for r, n in sent.items()
        ]
        sent[pick(strategy, *views)] += 1
    assert sent == {"a": 10, "b": 10, "c": 10}


def test_among_many_candidates_a_sample_is_scored_and_its_best_taken() -> None:
    loads = list(range(200))
    random.Random(4).shuffle(loads)
    views = [
        view(f"{i:03d}", in_flight=n, awaiting=n, awaiting_tokens=100 * n)
        for i, n in enumerate(loads)
    ]
    strategy = LeastWork(seed=1)
    ranks = [loads[int(pick(strategy, *views))] for _ in range(300)]
    # The best of about 33 random draws: its rank averages about 200 / 34.
    assert sum(ranks) / len(ranks) < 12
    assert len(set(ranks)) > 3  # not always the same replica: no herd
    assert pick(LeastWork(sample=0, seed=1), *views) == f"{loads.index(0):03d}"
