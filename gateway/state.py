"""Everything a request handler needs, built by the lifespan and reached through the ASGI
state (`scope["state"]["gateway"]`); no module-level state anywhere."""

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import routers
from gateway.access_log import AccessLog
from gateway.keys import KeyRing
from gateway.limits import Limits
from gateway.membership import Membership
from gateway.settings import GatewaySettings
from gateway.telemetry import Telemetry
from gateway.upstream import Upstream
from gateway.upstream_http import UpstreamClient
from routers import Outcome, RouteRequest, Strategy
from routers.pool import ReplicaPool

FinishedHook = Callable[[RouteRequest, Outcome], None]


@dataclass
class Gateway:
    settings: GatewaySettings
    pool: ReplicaPool[Upstream]
    upstream: UpstreamClient
    telemetry: Telemetry
    strategy: Strategy
    log: Any
    # Client keys (replaced whole when the keys file changes) and their limits.
    keys: KeyRing = field(default_factory=lambda: KeyRing({}))
    limits: Limits = field(default_factory=Limits)
    # The strategy's optional hook, resolved once per strategy rather than per request.
    on_finished: FinishedHook | None = field(default=None)
    # The admin key as bytes, compared against the raw Authorization header.
    admin_keys: tuple[bytes, ...] = ()
    # Replicas joining and leaving at run time (set by the lifespan).
    membership: Membership | None = None
    # Whether the strategy reads RouteRequest.prefix_hashes (else the gateway skips them).
    prefix_hashes: bool = field(default=True)
    # The per-request line (gateway/access_log.py), at `log`'s level and in its format.
    access_log: AccessLog = field(init=False)

    def __post_init__(self) -> None:
        level = self.settings.log_level.lower()
        self.access_log = AccessLog(
            self.log, "gateway.proxy", sys.stderr, enabled=level in ("debug", "info")
        )
        self.use_strategy(self.strategy)
        admin = self.settings.admin_key_value()
        self.admin_keys = (admin.encode(),) if admin else ()

    def set_keys(self, keys: KeyRing) -> None:
        self.keys = keys

    def switch_strategy(self, name: str, options: dict[str, Any] | None = None) -> None:
        """Raises routers.StrategyNotFound for an unknown name, StrategyOptionsError for
        options it does not take; the old one stays then. Without `options`, the configured
        strategy gets its configured options and any other its defaults."""
        if options is None:
            options = self.settings.strategy_options if name == self.settings.strategy else {}
        self.use_strategy(routers.load(name, **options))
        self.announce_replicas()

    def use_strategy(self, strategy: Strategy) -> None:
        """Route with `strategy`; what it asks of each request is resolved here, once."""
        self.strategy = strategy
        self.on_finished = getattr(strategy, "on_request_finished", None)
        self.prefix_hashes = getattr(strategy, "reads_prefix_hashes", True) is not False

    def announce_replicas(self) -> None:
        """Tell the strategy about every replica it may route to now."""
        for replica in self.pool:
            if self.pool.available(replica):
                self.replica_changed(replica.id, True)

    def replica_changed(self, replica_id: str, available: bool) -> None:
        """The pool's listener: forward ejections and restorations to the strategy's hooks;
        on an ejection, the requests still waiting there for a first byte (nothing has
        reached their clients) go elsewhere at once."""
        # A drained replica finishes what it has; only an ejected one loses its waiters.
        if not available and not self.pool.get(replica_id).draining:
            for waiter in list(self.pool.get(replica_id).waiting):
                waiter.replica_lost(replica_id)
        hook_name = "on_replica_added" if available else "on_replica_removed"
        hook = getattr(self.strategy, hook_name, None)
        if hook is None:
            return
        try:
            hook(replica_id)
        except Exception:  # a plugin's bug must not stop health checks
            self.log.exception("strategy_hook_failed", hook=hook_name, replica=replica_id)


def gateway_of(state: Any) -> Gateway:
    """The Gateway in a request's state (Starlette's `request.state` or the ASGI dict)."""
    gw = state["gateway"] if isinstance(state, dict) else state.gateway
    assert isinstance(gw, Gateway)
    return gw
