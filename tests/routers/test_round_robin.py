from routers import RouteRequest
from routers.round_robin import RoundRobin
from tests.routers.views import view


def test_rotation_is_exact_and_per_model() -> None:
    strategy = RoundRobin()
    candidates = [view("r1"), view("r0")]
    picks = [strategy.choose(RouteRequest(model="a"), candidates) for _ in range(4)]
    assert [p.id for p in picks if p] == ["r0", "r1", "r0", "r1"]
    other = strategy.choose(RouteRequest(model="b"), candidates)
    assert other is not None and other.id == "r0"
