"""Everything a request handler needs, built by the lifespan and reached through the ASGI
state (`scope["state"]["gateway"]`); no module-level state anywhere."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

import routers
from gateway.pool import ReplicaPool
from gateway.settings import GatewaySettings
from gateway.telemetry import Telemetry
from routers import RouteRequest, Strategy

FinishedHook = Callable[[RouteRequest, str, bool], None]


@dataclass
class Gateway:
    settings: GatewaySettings
    pool: ReplicaPool
    session: aiohttp.ClientSession
    telemetry: Telemetry
    strategy: Strategy
    log: Any
    # The strategy's optional hook, resolved once per strategy rather than per request.
    on_finished: FinishedHook | None = field(default=None)
    # Client keys as bytes, compared against the raw Authorization header.
    api_keys: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        self.on_finished = getattr(self.strategy, "on_request_finished", None)
        self.api_keys = tuple(key.encode() for key in self.settings.api_keys)

    def switch_strategy(self, name: str) -> None:
        """Raises routers.StrategyNotFound for an unknown name; the old one stays then."""
        strategy = routers.load(name)
        self.strategy = strategy
        self.on_finished = getattr(strategy, "on_request_finished", None)


def gateway_of(state: Any) -> Gateway:
    """The Gateway in a request's state (Starlette's `request.state` or the ASGI dict)."""
    gw = state["gateway"] if isinstance(state, dict) else state.gateway
    assert isinstance(gw, Gateway)
    return gw
