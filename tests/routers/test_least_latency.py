from routers import Outcome, RouteRequest
from routers.least_latency import DEFAULT_TTFB_S, LeastLatency
from tests.routers.views import view


def request(n: int, tokens: int = 1000) -> RouteRequest:
    return RouteRequest(model="m", prompt_tokens_estimate=tokens, request_id=f"r{n}")


def teach(strategy: LeastLatency, replica: str, seconds_per_token: float, count: int) -> None:
    """Route `count` requests of 1,000 tokens to `replica` and report their TTFB."""
    for n in range(count):
        req = request(hash((replica, n)))
        choice = strategy.choose(req, [view(replica)])
        assert choice is not None
        strategy.on_request_finished(req, Outcome(replica, True, seconds_per_token * 1001))


def test_a_replica_that_answers_slower_per_token_is_avoided() -> None:
    strategy = LeastLatency(seed=0)
    teach(strategy, "fast", 30e-6, 5)
    teach(strategy, "slow", 90e-6, 5)
    assert strategy.estimate("slow") > 2.5 * strategy.estimate("fast")  # type: ignore[operator]
    idle = [view("fast"), view("slow")]
    assert strategy.choose(request(100), idle).id == "fast"  # type: ignore[union-attr]
    # Until the fast one has three times the work queued.
    queued = [view("fast", in_flight=2, awaiting=2, awaiting_tokens=2500), view("slow")]
    assert strategy.choose(request(101), queued).id == "slow"  # type: ignore[union-attr]


def test_a_sample_is_scaled_by_the_work_the_request_waited_for() -> None:
    strategy = LeastLatency(seed=0)
    teach(strategy, "a", 40e-6, 3)
    # Sent behind 3,000 queued tokens, it took 4 x as long: the same speed.
    req = request(7)
    assert strategy.choose(req, [view("a", in_flight=3, awaiting=3, awaiting_tokens=3000)])
    before = strategy.estimate("a")
    strategy.on_request_finished(req, Outcome("a", True, 40e-6 * 4001))
    assert abs(strategy.estimate("a") - before) < 1e-9  # type: ignore[operator]


def test_classic_peak_ewma_jumps_to_peaks_and_decays_back() -> None:
    strategy = LeastLatency(per_token=False, peak=True, window=9, seed=0)
    req = request(1)
    strategy.on_request_finished(req, Outcome("a", True, 0.1))
    strategy.on_request_finished(req, Outcome("a", True, 1.0))
    assert strategy.estimate("a") == 1.0
    for _ in range(30):
        strategy.on_request_finished(req, Outcome("a", True, 0.1))
    assert strategy.estimate("a") < 0.11  # type: ignore[operator]
    # Cost: estimate x (in flight + 1).
    strategy.on_request_finished(req, Outcome("b", True, 0.3))
    assert strategy.choose(req, [view("a", in_flight=3), view("b")]).id == "b"  # type: ignore[union-attr]
    assert strategy.choose(req, [view("a", in_flight=1), view("b")]).id == "a"  # type: ignore[union-attr]


def test_a_replica_never_heard_of_is_taken_as_average() -> None:
    strategy = LeastLatency(per_token=False, seed=0)
    assert strategy.default_estimate() == DEFAULT_TTFB_S
    strategy.on_request_finished(request(1), Outcome("a", True, 0.2))
    strategy.on_request_finished(request(2), Outcome("b", True, 0.4))
    assert abs(strategy.default_estimate() - 0.3) < 1e-12
    picks = {strategy.choose(request(3), [view("a"), view("new")]).id for _ in range(5)}  # type: ignore[union-attr]
    assert picks == {"a"}


def test_failures_count_as_slow_but_not_forever() -> None:
    strategy = LeastLatency(per_token=False, seed=0)
    for name in ("a", "b"):
        strategy.on_request_finished(request(1), Outcome(name, True, 0.1))
    strategy.on_request_finished(request(2), Outcome("a", False, None))
    assert strategy.estimate("a") > strategy.estimate("b")  # type: ignore[operator]
    assert strategy.choose(request(3), [view("a"), view("b")]).id == "b"  # type: ignore[union-attr]
    assert strategy.choose(request(4), [view("a"), view("b", in_flight=2)]).id == "a"  # type: ignore[union-attr]
    strategy.on_replica_added("a")  # back from an ejection: starts again from the average
    assert strategy.estimate("a") is None


def test_finishes_of_requests_it_did_not_route_teach_nothing_per_token() -> None:
    strategy = LeastLatency(seed=0)
    strategy.on_request_finished(request(1), Outcome("a", True, 5.0))
    assert strategy.estimate("a") is None
