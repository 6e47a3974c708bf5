from collections import Counter

import pytest

from routers import RouteRequest
from routers.p2c import PowerOfTwo
from tests.routers.views import view

REQ = RouteRequest(model="m")


def test_the_less_loaded_of_two_draws_wins_so_the_most_loaded_never_does() -> None:
    strategy = PowerOfTwo(seed=1)
    candidates = [view("idle", in_flight=0), view("some", in_flight=5), view("full", in_flight=9)]
    picks = Counter(strategy.choose(REQ, candidates).id for _ in range(600))  # type: ignore[union-attr]
    assert picks["full"] == 0
    # The idle one wins whenever it is drawn: in 2 of the 3 possible pairs.
    assert 350 < picks["idle"] < 450
    assert picks["idle"] + picks["some"] == 600


def test_the_two_draws_are_distinct() -> None:
    strategy = PowerOfTwo(seed=2)
    candidates = [view("a", in_flight=1), view("b", in_flight=0)]
    assert {strategy.choose(REQ, candidates).id for _ in range(50)} == {"b"}  # type: ignore[union-attr]


def test_three_choices_avoid_the_second_most_loaded_too() -> None:
    strategy = PowerOfTwo(choices=3, seed=3)
    candidates = [view(str(i), in_flight=i) for i in range(4)]
    picks = Counter(strategy.choose(REQ, candidates).id for _ in range(400))  # type: ignore[union-attr]
    assert picks["3"] == picks["2"] == 0


def test_work_load_weighs_queued_prompt_tokens() -> None:
    candidates = [
        view("long", in_flight=1, awaiting=1, awaiting_tokens=9000),
        view("short", in_flight=3, awaiting=3, awaiting_tokens=600),
    ]
    assert PowerOfTwo(seed=0).choose(REQ, candidates).id == "short"  # type: ignore[union-attr]
    assert PowerOfTwo(load="in_flight", seed=0).choose(REQ, candidates).id == "long"  # type: ignore[union-attr]


def test_same_seed_same_draws() -> None:
    candidates = [view(str(i), in_flight=i % 3) for i in range(10)]
    one, two = PowerOfTwo(seed=9), PowerOfTwo(seed=9)
    assert [one.choose(REQ, candidates) for _ in range(30)] == [
        two.choose(REQ, candidates) for _ in range(30)
    ]


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="choices"):
        PowerOfTwo(choices=1)
    with pytest.raises(ValueError, match="load"):
        PowerOfTwo(load="queue")  # type: ignore[arg-type]
