"""A strategy from outside Turnout: fewest in-flight requests, ties to the last id.

The tie rule makes it easy to recognise from outside: an idle fleet always gets the
replica whose id sorts last, which no built-in strategy does.
"""

from collections.abc import Sequence

from routers.types import ReplicaView, RouteRequest, StrategyBase


class LeastLoaded(StrategyBase):
    name = "least_loaded_test"

    def choose(
        self, request: RouteRequest, candidates: Sequence[ReplicaView]
    ) -> ReplicaView | None:
        if not candidates:
            return None
        return max(candidates, key=lambda view: (-view.in_flight, view.id))
