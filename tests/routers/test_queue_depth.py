from routers import RouteRequest
from routers.queue_depth import QueueDepth
from tests.routers.views import view

REQ = RouteRequest(model="m")


def test_fewest_on_the_replica_counting_what_was_sent_and_finished_since_wins() -> None:
    candidates = [
        view("a", waiting=1, running=2, dispatched=3),  # 6
        view("b", waiting=3, running=4),  # 7
        view("c", waiting=2, running=4, dispatched=1, finished=3),  # 4
    ]
    choice = QueueDepth(seed=0).choose(REQ, candidates)
    assert choice is not None and choice.id == "c"


def test_a_replica_scraped_long_ago_is_not_charged_for_requests_that_finished() -> None:
    # "old" was scraped a second ago: 12 sent since, 11 of them done. "new" was just scraped
    # with one running. Counting sends alone would send everything to "new".
    old = view("old", waiting=0, running=1, dispatched=12, finished=11)
    new = view("new", waiting=0, running=3)
    choice = QueueDepth(seed=0).choose(REQ, [old, new])
    assert choice is not None and choice.id == "old"


def test_fewer_waiting_breaks_ties() -> None:
    candidates = [view("a", waiting=3, running=1), view("b", waiting=0, running=4)]
    choice = QueueDepth(seed=0).choose(REQ, candidates)
    assert choice is not None and choice.id == "b"


def test_stale_metrics_fall_back_to_local_in_flight() -> None:
    # "a" looks idle by its stale scrape but this gateway has 5 open on it.
    candidates = [view("a", waiting=0, stale=True, in_flight=5), view("b", waiting=7, in_flight=1)]
    choice = QueueDepth(seed=0).choose(REQ, candidates)
    assert choice is not None and choice.id == "b"


def test_full_ties_are_broken_at_random() -> None:
    strategy = QueueDepth(seed=1)
    candidates = [view("a", waiting=0), view("b", waiting=0)]
    picks = {strategy.choose(REQ, candidates).id for _ in range(50)}  # type: ignore[union-attr]
    assert picks == {"a", "b"}


def burst(strategy: QueueDepth, waiting: dict[str, float], n: int) -> dict[str, int]:
    """Route n requests against one fresh scrape, crediting each dispatch as the pool
    does; returns how many each replica got."""
    sent = dict.fromkeys(waiting, 0)
    for _ in range(n):
        candidates = [view(r, waiting=w, dispatched=sent[r]) for r, w in waiting.items()]
        choice = strategy.choose(REQ, candidates)
        assert choice is not None
        sent[choice.id] += 1
    return sent


def test_a_burst_after_one_scrape_does_not_herd() -> None:
    # All three look idle in the scrape: the burst must spread, not all go to one.
    sent = burst(QueueDepth(seed=3), {"a": 0, "b": 0, "c": 0}, 30)
    assert sent == {"a": 10, "b": 10, "c": 10}


def test_a_burst_fills_the_short_queues_first_then_levels() -> None:
    sent = burst(QueueDepth(seed=4), {"long": 6, "b": 0, "c": 1}, 15)  # nothing running
    # Water-filling: 11 requests bring b and c level with "long" at 6; the last 4
    # spread over all three, so the queues end within one request of each other.
    finals = {"long": 6 + sent["long"], "b": sent["b"], "c": 1 + sent["c"]}
    assert max(finals.values()) - min(finals.values()) <= 1
    assert sent["long"] <= 2


def test_one_replica_without_fresh_metrics_puts_all_on_local_counts() -> None:
    # "b" was never scraped (e.g. no /metrics): unknown is not idle, so everyone is
    # compared by in-flight, where "a" is the less loaded one.
    candidates = [view("a", waiting=9, in_flight=1), view("b", in_flight=4)]
    choice = QueueDepth(seed=0).choose(REQ, candidates)
    assert choice is not None and choice.id == "a"


def test_running_tie_break_uses_the_scrape_not_local_in_flight() -> None:
    candidates = [
        view("a", waiting=0, running=1, in_flight=9),
        view("b", waiting=0, running=5, in_flight=0),
    ]
    choice = QueueDepth(seed=0).choose(REQ, candidates)
    assert choice is not None and choice.id == "a"


def test_same_seed_same_choices() -> None:
    candidates = [view(r, waiting=0) for r in "abcd"]
    one, two = QueueDepth(seed=11), QueueDepth(seed=11)
    assert [one.choose(REQ, candidates) for _ in range(20)] == [
        two.choose(REQ, candidates) for _ in range(20)
    ]


def test_single_candidate_and_none() -> None:
    strategy = QueueDepth()
    only = view("a", waiting=100)
    assert strategy.choose(REQ, [only]) is only
    assert strategy.choose(REQ, []) is None
