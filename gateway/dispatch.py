"""Routing one request to a replica, and trying others while nothing has reached the client.

A request may take up to MAX_ATTEMPTS replicas, each at most once, while no byte of an
answer has gone back: when a replica cannot be reached, answers 429/502/503/504, is slower
to its first byte than it normally is (gateway/deadlines.py), or is ejected while the
request waits on it (the pool calls `Exchange.replica_lost`). After the first byte, a
break can only end the stream (gateway/relay.py).
"""

import asyncio
import math
import time
from dataclasses import replace
from functools import partial
from typing import Any

from gateway.errors import GatewayError, NoReplicaAvailable, UpstreamError, UpstreamTimeout
from gateway.relay import (
    RETRY_STATUSES,
    RelayResult,
    UpstreamFailure,
    first_chunk,
    is_stream,
    open_upstream,
    relay_response,
)
from gateway.state import Gateway
from gateway.upstream import Upstream
from gateway.upstream_http import Response
from routers import Outcome, RouteRequest
from routers.pool import ReplicaPool
from turnout.asgi import Send

# Replicas one request may try: enough to get past one dead and one hung replica.
MAX_ATTEMPTS = 3


class Exchange:
    """What one request learns on its way, for the answer, the log line and the metrics."""

    __slots__ = (
        "error",
        "failed",
        "first_byte_at",
        "headers",
        "key",
        "model",
        "model_label",
        "pool",
        "replica",
        "request_id",
        "rerouted",
        "response_started",
        "retried",
        "session",
        "started",
        "status",
        "task",
        "tried",
    )

    def __init__(self, request_id: str) -> None:
        self.started = time.perf_counter()
        self.request_id = request_id
        self.model = ""
        self.model_label = "none"
        self.replica = "none"
        self.key = "none"
        self.status = 0
        self.first_byte_at: float | None = None
        self.retried = False
        self.response_started = False
        self.error = ""
        self.headers: list[tuple[bytes, bytes]] = []
        self.tried: list[str] = []
        # "replica: kind after N s" of each attempt that failed before the last one.
        self.failed: list[str] = []
        self.rerouted = False
        self.task: asyncio.Task[Any] | None = None
        self.pool: ReplicaPool[Upstream] | None = None
        self.session: str | None = None

    def response_headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"x-turnout-replica", self.replica.encode()),
            (b"x-request-id", self.request_id.encode()),
        ]

    def replica_lost(self, replica_id: str) -> None:
        """The replica this request waits on was ejected: go elsewhere now, if there is an
        elsewhere (another attempt allowed, another healthy replica serving the model)."""
        task, pool = self.task, self.pool
        if task is None or pool is None or self.rerouted or task.cancelling():
            return
        if len(self.tried) + 1 >= MAX_ATTEMPTS:
            return
        if not pool.candidates(self.model, [*self.tried, replica_id]):
            return
        self.rerouted = True
        task.cancel()


def no_replica(gw: Gateway, model: str) -> NoReplicaAvailable:
    retry_after = str(max(1, math.ceil(gw.settings.health_interval)))
    return NoReplicaAvailable(
        f"no healthy replica serves {model!r} right now; retry later",
        headers={"retry-after": retry_after},
    )


async def dispatch(
    gw: Gateway, exchange: Exchange, route: RouteRequest, path: bytes, body: bytes, send: Send
) -> None:
    """Pick a replica and relay; another one while the first ones fail before any byte."""
    tried = exchange.tried
    last_error: GatewayError | None = None
    for attempt in range(MAX_ATTEMPTS):
        candidates = gw.pool.candidates(route.model, tried)
        if attempt:  # the strategy's time: now, not when the request came in
            route = replace(route, now=time.monotonic())
        view = gw.strategy.choose(route, candidates) if candidates else None
        if view is None:
            raise last_error or no_replica(gw, route.model)
        replica = gw.pool.get(view.id)
        exchange.replica = replica.id
        if attempt:
            exchange.retried = True
            gw.telemetry.observe_retry(route.model)
        can_retry = attempt + 1 < MAX_ATTEMPTS and len(candidates) > 1
        began = time.perf_counter()
        try:
            if await _attempt(gw, exchange, route, replica, path, body, send, can_retry):
                return
        except UpstreamFailure as failure:
            if not (failure.retryable and attempt + 1 < MAX_ATTEMPTS):
                raise failure.error from None
            last_error = failure.error
        tried.append(replica.id)
        spent = time.perf_counter() - began
        exchange.failed.append(f"{replica.id}: {exchange.error} after {spent:.3f} s")
    raise last_error or no_replica(gw, route.model)


async def _attempt(
    gw: Gateway,
    exchange: Exchange,
    route: RouteRequest,
    replica: Upstream,
    path: bytes,
    body: bytes,
    send: Send,
    can_retry: bool,
) -> bool:
    """One exchange with one replica. False: it answered 'not now' and we may retry."""
    settings = gw.settings
    pool = gw.pool
    tokens = route.prompt_tokens_estimate
    pool.acquire(replica.id, tokens)
    ok = complete = False
    resp = None
    ttfb: float | None = None
    sent_at = time.perf_counter()
    try:
        try:
            resp, first = await _first_byte(gw, exchange, replica, path, body, can_retry, route)
        except UpstreamFailure as failure:
            health = failure.kind not in ("replica_ejected", "slow_first_byte")
            _note_failure(gw, exchange, replica, failure.kind, fatal=failure.fatal, health=health)
            raise
        # The replica answered (a stream's first chunk, or a whole answer's headers): its
        # prefill for this request is done, as far as the pool's queued-work count goes.
        ttfb = time.perf_counter() - sent_at
        status = resp.status
        # A stream's chunks show when the replica's engine steps end (`ReplicaPool.tokens`);
        # this one first, so that its first byte counts with its step.
        streamed = first is not None and status < 400
        if streamed:
            pool.tokens(replica.id)
        pool.first_byte(replica.id, tokens)
        if status >= 500 or status == 429:
            # 429 (and a kind's own "busy", as Ollama's 503) is load, not ill health: it
            # counts as an error but ejects nothing.
            kind = f"http_{status}"
            health = status >= 500 and status not in replica.busy_statuses
            _note_failure(gw, exchange, replica, kind, fatal=False, health=health)
            if can_retry and status in RETRY_STATUSES:
                return False
        else:
            pool.record_success(replica.id)
            exchange.error = ""
        result = RelayResult(on_chunk=partial(pool.tokens, replica.id) if streamed else None)
        try:
            await relay_response(
                resp, send, exchange.response_headers(), settings.idle_timeout, result, first
            )
        except UpstreamFailure as failure:
            _note_failure(gw, exchange, replica, failure.kind, fatal=failure.fatal)
            raise
        finally:
            exchange.response_started = result.started
            exchange.first_byte_at = result.first_byte_at
            complete = result.complete
        exchange.status = status
        if result.broken is not None:
            _note_failure(gw, exchange, replica, result.broken[0], fatal=False)
        ok = status < 400 and result.broken is None
        return True
    finally:
        pool.release(replica.id, tokens, answered=ttfb is not None)
        if resp is not None and not complete:
            # An unfinished response's connection cannot be reused: closing it also tells
            # the replica to stop (that is how a client's disconnect reaches it).
            resp.close()
        if gw.on_finished is not None:
            gw.on_finished(route, Outcome(replica.id, ok, ttfb))


async def _first_byte(
    gw: Gateway,
    exchange: Exchange,
    replica: Upstream,
    path: bytes,
    body: bytes,
    can_retry: bool,
    route: RouteRequest,
) -> tuple[Response, bytes | None]:
    """Send the request and wait for the answer's headers (and a stream's first chunk),
    within the first-byte deadline; while it waits, an ejection of the replica moves it
    elsewhere. On failure the upstream response is closed and UpstreamFailure raised."""
    estimate = replica.first_byte_stream if route.stream else replica.first_byte_whole
    cap = gw.settings.first_byte_timeout
    # Only a request that could go elsewhere is cut at what the replica normally takes.
    deadline = estimate.deadline(cap) if can_retry else cap
    # The model under the replica's own name (aliases) and its API key, if it has either.
    body, headers = replica.request_for(route.model, body, exchange.headers)
    resp = None
    waiting = replica.waiting
    exchange.rerouted = False
    waiting.add(exchange)
    sent_at = time.perf_counter()
    try:
        async with asyncio.timeout(deadline):
            resp = await open_upstream(gw.upstream, replica.url, path, body, headers)
            first = await first_chunk(resp) if is_stream(resp) else None
    except BaseException as exc:
        if resp is not None:
            resp.close()
        if isinstance(exc, TimeoutError):
            raise _late(deadline, cap) from None
        if isinstance(exc, asyncio.CancelledError) and exchange.rerouted:
            assert exchange.task is not None
            exchange.task.uncancel()
            raise UpstreamFailure(
                "replica_ejected",
                UpstreamError("the replica was taken out while the request waited on it"),
                retryable=True,
                fatal=False,
            ) from None
        raise
    finally:
        waiting.discard(exchange)
    estimate.observe(time.perf_counter() - sent_at)
    return resp, first


def _late(deadline: float, cap: float) -> UpstreamFailure:
    if deadline < cap:
        return UpstreamFailure(
            "slow_first_byte",
            UpstreamTimeout(
                f"the replica sent nothing within {deadline:.3g} s, far beyond its usual time"
            ),
            retryable=True,
            fatal=False,
        )
    return UpstreamFailure(
        "first_byte_timeout",
        UpstreamTimeout(f"the replica sent no response within {cap:g} s"),
        retryable=False,
        fatal=False,
    )


def _note_failure(
    gw: Gateway,
    exchange: Exchange,
    replica: Upstream,
    kind: str,
    *,
    fatal: bool,
    health: bool = True,
) -> None:
    """Count a failure of `replica` and, for health-relevant ones, tell the pool."""
    exchange.error = kind
    gw.telemetry.observe_upstream_error(replica.id, kind)
    if health and gw.pool.record_error(replica.id, kind, fatal=fatal):
        gw.log.warning("replica_ejected", replica=replica.id, reason=kind, by="traffic")
