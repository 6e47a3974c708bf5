"""Routing strategies: the protocol, the registry and the built-ins."""

from routers.registry import StrategyNotFound, StrategyOptionsError, available, load
from routers.types import Metrics, Outcome, ReplicaView, RouteRequest, Strategy

__all__ = [
    "Metrics",
    "Outcome",
    "ReplicaView",
    "RouteRequest",
    "Strategy",
    "StrategyNotFound",
    "StrategyOptionsError",
    "available",
    "load",
]
