import pytest

import routers
from routers import RouteRequest, StrategyNotFound


def test_builtins_are_registered_as_entry_points() -> None:
    assert {"round_robin", "queue_depth"} <= set(routers.available())


def test_unknown_name_lists_what_is_available() -> None:
    with pytest.raises(
        StrategyNotFound, match=r"misspelled or not installed; available: .*round_robin"
    ):
        routers.load("round_robbin")


@pytest.mark.parametrize("name", routers.available())
def test_every_registered_strategy_honours_the_contract(name: str) -> None:
    from tests.routers.views import view

    strategy = routers.load(name)
    assert strategy.name == name
    request = RouteRequest(model="m")
    assert strategy.choose(request, []) is None
    candidates = [view("a"), view("b"), view("c")]
    for _ in range(10):
        assert strategy.choose(request, candidates) in candidates
