from routers import Outcome, RouteRequest
from routers.prefix_least_work import PrefixLeastWork
from tests.routers.views import prompt, view

SYSTEM = tuple(range(1000, 1064))  # 64 blocks: 1,024 tokens of shared prefix


def pick(strategy: PrefixLeastWork, request: RouteRequest, *candidates: object) -> str:
    choice = strategy.choose(request, candidates)  # type: ignore[arg-type]
    assert choice is not None
    return choice.id


def warm(strategy: PrefixLeastWork, replica: str, request: RouteRequest) -> None:
    assert pick(strategy, request, view(replica, waiting=0)) == replica
    strategy.on_request_finished(request, Outcome(replica, True, 0.1))


def test_without_shared_prefixes_it_is_least_work() -> None:
    request = prompt(*range(40), id="q")
    a = view("a", waiting=0, running=1, in_flight=1, awaiting=1, awaiting_tokens=8000)
    b = view("b", waiting=0, running=3, in_flight=3, awaiting=3, awaiting_tokens=900)
    assert pick(PrefixLeastWork(seed=0), request, a, b) == "b"


def test_a_warm_replica_keeps_its_prefix_until_its_queue_outweighs_the_saving() -> None:
    strategy = PrefixLeastWork(seed=0)
    warm(strategy, "warm", prompt(*SYSTEM, 1, id="w"))
    question = prompt(*SYSTEM, 2, tokens=1100)
    cold = view("cold", waiting=0)
    # 1,024 cached tokens are worth 4,096 queued ones (cache_weight 4).
    queued = view("warm", waiting=0, in_flight=3, awaiting=3, awaiting_tokens=4000)
    assert pick(strategy, question, queued, cold) == "warm"
    swamped = view("warm", waiting=0, in_flight=3, awaiting=3, awaiting_tokens=4200)
    assert pick(strategy, question, swamped, cold) == "cold"
    greedy = PrefixLeastWork(cache_weight=1, seed=0)
    warm(greedy, "warm", prompt(*SYSTEM, 1, id="w"))
    assert pick(greedy, question, queued, cold) == "cold"


def test_queued_prompts_that_were_cached_weigh_only_their_uncached_part() -> None:
    assert _unrelated_prompt_goes_to(PrefixLeastWork(seed=0)) == "a"
    # With uncached_share=False the queue counts whole, as least_work counts it.
    assert _unrelated_prompt_goes_to(PrefixLeastWork(uncached_share=False, seed=0)) == "b"


def _unrelated_prompt_goes_to(strategy: PrefixLeastWork) -> str:
    warm(strategy, "a", prompt(*SYSTEM, 1, id="w"))
    # Four more of the family go to "a" and are still waiting for their first byte: 4,400
    # prompt tokens, of which only 76 each are new there.
    for i in range(4):
        request = prompt(*SYSTEM, 10 + i, id=f"f{i}", tokens=1100, now=0.0)
        queue = view("a", waiting=0, in_flight=i, awaiting=i, awaiting_tokens=1100 * i)
        assert pick(strategy, request, queue, view("b", waiting=0, in_flight=9)) == "a"
    unrelated = prompt(*range(5000, 5020), id="u", tokens=320, now=0.0)
    a = view("a", waiting=0, in_flight=4, awaiting=4, awaiting_tokens=4400)
    b = view("b", waiting=0, in_flight=2, awaiting=2, awaiting_tokens=1000)
    # Counted whole, "a" has 4,400 queued against 1,000; uncached, about 350.
    return pick(strategy, unrelated, a, b)


def test_without_prefix_caching_prefixes_are_ignored() -> None:
    strategy = PrefixLeastWork(prefix_caching=False, seed=0)
    warm(strategy, "warm", prompt(*SYSTEM, 1, id="w"))
    question = prompt(*SYSTEM, 2, tokens=1100)
    warm_view = view("warm", waiting=0, in_flight=1, awaiting=1, awaiting_tokens=500)
    assert pick(strategy, question, warm_view, view("cold", waiting=0)) == "cold"


def test_a_removed_replica_is_forgotten() -> None:
    strategy = PrefixLeastWork(seed=0)
    warm(strategy, "a", prompt(*SYSTEM, 1, id="w"))
    strategy.on_replica_removed("a")
    question = prompt(*SYSTEM, 2, tokens=1100)
    a = view("a", waiting=0, in_flight=1, awaiting=1, awaiting_tokens=100)
    assert pick(strategy, question, a, view("b", waiting=0)) == "b"
