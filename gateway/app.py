"""The app factory. The lifespan owns every resource: the upstream HTTP client, the
replica pool, the strategy, the metrics poller and health checker, the metrics registry."""

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from lightkube import KubeConfig
from starlette.exceptions import HTTPException

import routers
from gateway import k8s_discovery
from gateway.admin import build_admin
from gateway.api import RELAYED_PATHS, build_api, mount_relay
from gateway.describe import with_strategy_names
from gateway.errors import GatewayError, InvalidRequest, from_status
from gateway.health import HealthChecker
from gateway.intake import request_id_from
from gateway.keys import KeyRing, KeysInvalid, build_ring, watch_key_file
from gateway.limits import Limits
from gateway.membership import Membership
from gateway.poller import MetricsPoller
from gateway.proxy import ProxyEndpoint
from gateway.replicas_file import ConfigError, ReplicaEntry, load_replica_specs
from gateway.settings import GatewaySettings
from gateway.shared_view import Publisher
from gateway.startup import check_admin_exposure
from gateway.state import Gateway
from gateway.telemetry import Telemetry
from gateway.upstream_http import UpstreamClient
from routers.pool import ReplicaPool
from turnout.asgi import Message, Receive, Scope, Send
from turnout.logs import get_logger

# vLLM (uvicorn) closes idle keep-alive connections after 5 s; reuse only younger ones,
# so a request is never written onto a connection the replica is closing.
UPSTREAM_KEEPALIVE_S = 4.0


class GatewayApp(FastAPI):
    """FastAPI, except that the relayed POST paths go straight to the plain-ASGI relay:
    FastAPI's middleware, routing and exception layers cost about as much as the relay.
    Everything else (wrong method on those paths included) takes the normal route, and
    gets the same x-request-id and x-turnout-replica headers as relayed answers."""

    _relay = ProxyEndpoint()

    def openapi(self) -> dict[str, Any]:
        return with_strategy_names(super().openapi())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] in RELAYED_PATHS
            and "state" in scope
        ):
            await self._relay(scope, receive, send)
            return
        if scope["type"] == "http":
            send = _tagged(scope, send)
        await super().__call__(scope, receive, send)


def _tagged(scope: Scope, send: Send) -> Send:
    """`send` that adds x-request-id (the client's, or a new one) and
    x-turnout-replica: none to the response's headers."""
    client_id = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
    extra = [
        (b"x-turnout-replica", b"none"),
        (b"x-request-id", request_id_from(client_id).encode()),
    ]

    async def tagged_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *extra]}
        await send(message)

    return tagged_send


def create_app(
    settings: GatewaySettings,
    specs: list[ReplicaEntry] | None = None,
    shared_dir: Path | None = None,
) -> FastAPI:
    """Build the gateway. Raises ConfigError (one line: what is wrong, what is allowed)
    for an unknown strategy or options it does not take, a bad replica list or keys file,
    or an /admin that would be open to the network, before anything starts. `specs` are the
    replicas when already loaded (and identified: see `identify_kinds`). `shared_dir`:
    this is one of several workers, and that is their metrics directory
    (gateway/workers.py)."""
    check_admin_exposure(settings)
    if specs is None:
        specs = load_replica_specs(settings)
    check_strategy(settings)
    try:
        keys = _key_ring(settings)
    except KeysInvalid as exc:
        raise ConfigError(str(exc)) from None
    kube = k8s_discovery.load_config() if settings.discovery == "k8s" else None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        running = _running_gateway(settings, specs, keys, shared_dir)
        async with running as gw, _discovery(gw, kube):
            yield {"gateway": gw}

    app = GatewayApp(
        title="Turnout gateway",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # The description of the gateway's own endpoints (the relayed paths are OpenAI's).
        openapi_url="/openapi.json",
        # FastAPI's native OpenTelemetry checks its providers on every request (~100 µs
        # here); the gateway has its own metrics and log line.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.add_exception_handler(GatewayError, _render_error)
    app.add_exception_handler(HTTPException, _render_http_error)
    app.add_exception_handler(RequestValidationError, _render_validation_error)
    mount_relay(app)
    app.include_router(build_api())
    app.include_router(build_admin())
    return app


def check_strategy(settings: GatewaySettings) -> None:
    """ConfigError for a strategy that is not installed or options it does not take."""
    if settings.strategy not in routers.available():
        raise ConfigError(
            f"unknown strategy {settings.strategy!r}: misspelled or not installed; "
            f"available: {', '.join(routers.available()) or 'none'}"
        )
    try:  # built once here to check the options; the lifespan builds its own
        routers.load(settings.strategy, **settings.strategy_options)
    except routers.StrategyOptionsError as exc:
        raise ConfigError(f"--strategy-options / GATEWAY_STRATEGY_OPTIONS: {exc}") from None


def _key_ring(settings: GatewaySettings) -> KeyRing:
    ring = build_ring(
        settings.api_key_values(),
        settings.api_keys_file,
        rate=settings.key_rate,
        concurrency=settings.key_concurrency,
    )
    limited = ring.limited()
    if settings.workers > 1 and limited:
        # Each worker would count on its own: refused at start-up and on every reload.
        raise KeysInvalid(
            f"keys file {settings.api_keys_file}: per-key limits (rate, concurrency) need "
            f"GATEWAY_WORKERS=1: each of {settings.workers} workers would count on its own; "
            f"keys with limits: {', '.join(limited)}"
        )
    return ring


@contextlib.asynccontextmanager
async def _running_gateway(
    settings: GatewaySettings,
    specs: list[ReplicaEntry],
    keys: KeyRing,
    shared_dir: Path | None = None,
) -> AsyncIterator[Gateway]:
    log = get_logger("gateway")
    # Metrics older than three polls are unknown, not idle.
    pool = ReplicaPool(
        (spec.to_replica() for spec in specs), stale_after=3 * settings.poll_interval
    )
    # No connection cap (the strategy decides how much each replica gets, not a pool);
    # bytes relayed as sent, no headers of its own but Host and Content-Length.
    upstream = UpstreamClient(
        connect_timeout=settings.connect_timeout, keepalive_s=UPSTREAM_KEEPALIVE_S
    )
    # Health checks and scrapes are not on the hot path; httpx serves them.
    checks = httpx.AsyncClient(timeout=settings.connect_timeout + settings.poll_interval)
    gw = Gateway(
        settings=settings,
        pool=pool,
        upstream=upstream,
        telemetry=Telemetry(pool, shared_dir=shared_dir),
        strategy=routers.load(settings.strategy, **settings.strategy_options),
        log=get_logger("gateway.proxy"),
        keys=keys,
        limits=Limits(settings.max_requests),
    )
    pool.set_listener(gw.replica_changed)
    gw.announce_replicas()
    health = HealthChecker(pool, checks, settings.health_interval)
    gw.membership = Membership(pool, health, get_logger("gateway.membership"))
    poller = MetricsPoller(pool, checks, settings.poll_interval)
    tasks: list[asyncio.Task[None]] = []
    try:
        # Learn what each replica serves before the first request arrives.
        await health.refresh_all()
        tasks = [
            asyncio.create_task(health.run(), name="health"),
            asyncio.create_task(poller.run(), name="poller"),
        ]
        if settings.api_keys_file is not None:
            watcher = watch_key_file(
                settings.api_keys_file, lambda: _key_ring(settings), gw.set_keys, log
            )
            tasks.append(asyncio.create_task(watcher, name="keys file"))
        if shared_dir is not None:
            publisher = Publisher(pool, shared_dir, os.getpid())
            tasks.append(asyncio.create_task(publisher.run(), name="pool view"))
        log.info(
            "gateway_started",
            replicas=[r.id for r in pool],
            healthy=[r.id for r in pool if r.healthy],
            kinds={r.id: None if r.kind is None else r.kind.name for r in pool},
            models=pool.served_models(),
            strategy=settings.strategy,
            listen=f"http://{settings.host}:{settings.port}",
            client_keys=len(keys),
            admin="key" if settings.admin_key_value() else "open",
        )
        yield gw
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await upstream.close()
        await checks.aclose()
        gw.access_log.flush()  # request lines before the last line
        log.info("gateway_stopped")


@contextlib.asynccontextmanager
async def _discovery(gw: Gateway, kube: KubeConfig | None) -> AsyncIterator[None]:
    """Feed the pool from Kubernetes while the gateway runs (GATEWAY_DISCOVERY=k8s)."""
    if kube is None:
        yield
        return
    membership = gw.membership
    assert membership is not None and gw.settings.k8s_service is not None

    async def on_change(entries: list[ReplicaEntry]) -> None:
        await membership.sync(k8s_discovery.SOURCE, entries)

    async with k8s_discovery.watching(
        kube,
        gw.settings.k8s_namespace,
        gw.settings.k8s_service,
        gw.settings.k8s_port,
        on_change,
        get_logger("gateway.k8s"),
    ):
        yield


def _error_response(request: Request, err: GatewayError) -> Response:
    return Response(
        err.body(), status_code=err.status, media_type="application/json", headers=err.headers
    )


async def _render_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return _error_response(request, exc)


async def _render_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404:
        message = f"no such endpoint: {request.method} {request.url.path}"
    return _error_response(request, from_status(exc.status_code, message))


async def _render_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()
    )
    return _error_response(request, InvalidRequest(f"invalid request: {problems}"))
