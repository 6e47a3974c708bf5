from routers import Outcome, RouteRequest
from routers.lmetric import LMetric
from tests.routers.views import prompt, view

SYSTEM = tuple(range(1000, 1064))  # 64 blocks: 1,024 tokens of shared prefix


def pick(strategy: LMetric, request: RouteRequest, *candidates: object) -> str:
    choice = strategy.choose(request, candidates)  # type: ignore[arg-type]
    assert choice is not None
    return choice.id


def warm(strategy: LMetric, replica: str, request: RouteRequest) -> None:
    """Route `request` where the strategy can only pick `replica`."""
    assert pick(strategy, request, view(replica, waiting=0)) == replica


def test_without_cache_knowledge_the_smaller_batch_wins() -> None:
    request = prompt(*range(40))
    a = view("a", waiting=2, running=10, in_flight=12)
    b = view("b", waiting=0, running=3, in_flight=3)
    assert pick(LMetric(seed=0), request, a, b) == "b"


def test_new_prefill_times_batch_trades_the_cache_against_load() -> None:
    strategy = LMetric(seed=0)
    system = tuple(range(2000, 2032))  # 512 tokens
    warm(strategy, "warm", prompt(*system, 1, 1, 1))
    question = prompt(*system, 2, 2, 2, 2, tokens=600)  # 512 cached on "warm": 88 new
    idle_cold = view("cold", waiting=0, running=1, in_flight=1)
    # 88 x (12 + 1) = 1,144 against 600 x (1 + 1) = 1,200: the cache wins over load.
    busy_warm = view("warm", waiting=0, running=12, in_flight=12)
    assert pick(strategy, question, busy_warm, idle_cold) == "warm"
    # 88 x 14 = 1,232 against 1,200: load wins.
    another = prompt(*system, 3, 3, 3, 3, tokens=600)
    swamped_warm = view("warm", waiting=0, running=13, in_flight=13)
    assert pick(strategy, another, swamped_warm, idle_cold) == "cold"


def test_the_product_needs_no_units() -> None:
    # Scaling every prompt (or every batch) by the same factor changes no choice.
    for scale in (1, 10):
        strategy = LMetric(seed=0)
        warm(strategy, "warm", prompt(*SYSTEM, 1, tokens=1040 * scale))
        question = prompt(*SYSTEM, 2, tokens=1100 * scale)
        busy = view("warm", waiting=0, running=9 * scale, in_flight=9 * scale)
        idle = view("cold", waiting=0, running=scale, in_flight=scale)
        assert pick(strategy, question, busy, idle) == "warm"


def test_an_idle_replica_still_weighs_its_prefill() -> None:
    # Batch + 1: both idle, so the one with the prefix wins rather than a tie.
    strategy = LMetric(seed=0)
    warm(strategy, "b", prompt(*SYSTEM, 1))
    question = prompt(*SYSTEM, 3, tokens=1100)
    assert pick(strategy, question, view("a", waiting=0), view("b", waiting=0)) == "b"


def test_what_it_sent_where_is_remembered() -> None:
    strategy = LMetric(seed=0)
    request = prompt(*range(30))
    first = pick(strategy, request, view("a", waiting=0), view("b", waiting=0))
    for _ in range(5):
        assert pick(strategy, request, view("a", waiting=0), view("b", waiting=0)) == first


def test_a_removed_replica_loses_its_cache_credit() -> None:
    strategy = LMetric(seed=0)
    warm(strategy, "a", prompt(*SYSTEM, 1))
    strategy.on_replica_removed("a")
    question = prompt(*SYSTEM, 2, tokens=1100)
    a = view("a", waiting=0, running=2, in_flight=2)
    b = view("b", waiting=0, running=1, in_flight=1)
    assert pick(strategy, question, a, b) == "b"


def test_pending_prefill_variant_counts_the_uncached_work_queued() -> None:
    strategy = LMetric(pending_prefill=True, seed=0)
    request = prompt(*range(20), id="r1", tokens=320)
    # "a" has 3,000 prompt tokens queued (all uncached, as far as we know), "b" none,
    # though "b" runs a bigger batch: (320 + 3,000) x 2 > 320 x 4.
    a = view("a", waiting=0, running=1, in_flight=1, awaiting=1, awaiting_tokens=3000)
    b = view("b", waiting=0, running=3, in_flight=3)
    assert pick(strategy, request, a, b) == "b"
    assert pick(LMetric(seed=0), request, a, b) == "a"
    strategy.on_request_finished(request, Outcome("b", True, 0.1))
    assert len(strategy.pending) == 0
