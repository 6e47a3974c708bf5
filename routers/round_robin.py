"""Exact rotation per model."""

from collections.abc import Sequence

from routers.types import ReplicaView, RouteRequest, StrategyBase


class RoundRobin(StrategyBase):
    name = "round_robin"
    reads_prefix_hashes = False

    def __init__(self) -> None:
        # Per model, how many picks so far; the candidate list order is stable (by id).
        self._turns: dict[str, int] = {}

    def choose(
        self, request: RouteRequest, candidates: Sequence[ReplicaView]
    ) -> ReplicaView | None:
        if not candidates:
            return None
        turn = self._turns.get(request.model, 0)
        self._turns[request.model] = turn + 1
        ordered = sorted(candidates, key=lambda view: view.id)
        return ordered[turn % len(ordered)]
