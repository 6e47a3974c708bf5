from routers import RouteRequest
from routers.queue_depth import QueueDepth
from tests.routers.views import view

REQ = RouteRequest(model="m")


def test_least_waiting_plus_dispatched_wins() -> None:
    candidates = [view("a", waiting=1, dispatched=3), view("b", waiting=3), view("c", waiting=2)]
    choice = QueueDepth(seed=0).choose(REQ, candidates)
    assert choice is not None and choice.id == "c"


def test_running_breaks_ties() -> None:
    candidates = [view("a", waiting=0, running=9), view("b", waiting=0, running=2)]
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
