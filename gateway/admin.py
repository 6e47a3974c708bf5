"""/admin: the replicas' state, adding, draining and removing replicas, and switching the
strategy at run time.

Guarded by GATEWAY_ADMIN_KEY (Bearer) when it is set. With several workers
(GATEWAY_WORKERS) a change would reach the one worker that took the request, so every
change is refused (409) and only reading is served, by that worker, which it names.
"""

import os
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

import routers
from gateway.api import GatewayDep, json_response
from gateway.auth import check_bearer
from gateway.describe import (
    RemovalBody,
    ReplicasBody,
    ReplicaState,
    StrategyBody,
    errors,
    json_body,
)
from gateway.errors import Conflict, InvalidRequest
from gateway.membership import Membership
from gateway.replicas_file import ConfigError, EntryBody, parse_entry
from gateway.state import Gateway
from gateway.upstream import Upstream


class StrategyChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    strategy: str
    options: dict[str, Any] | None = None


def require_admin_key(request: Request, gw: GatewayDep) -> None:
    value = request.headers.get("authorization")
    check_bearer(None if value is None else value.encode("latin-1"), gw.admin_keys, "admin key")


def require_one_worker(gw: GatewayDep) -> None:
    workers = gw.settings.workers
    if workers > 1:
        raise Conflict(
            f"the gateway runs {workers} workers, each with its own replicas and strategy: "
            "this change would reach one of them only; run it with GATEWAY_WORKERS=1 to "
            "change replicas or the strategy at run time"
        )


def replica_state(gw: Gateway, replica: Upstream) -> dict[str, Any]:
    view = gw.pool.view(replica)
    metrics = replica.metrics
    return {
        "name": replica.id,
        "url": replica.url,
        "kind": None if replica.kind is None else replica.kind.name,
        "kind_verified": replica.kind_verified,
        "aliases": dict(replica.aliases),
        "models": list(replica.models),
        "healthy": replica.healthy,
        "state": _state(replica),
        "source": _membership(gw).source_of(replica.id),
        "in_flight": replica.in_flight,
        "waiting": None if metrics is None else metrics.waiting,
        "running": None if metrics is None else metrics.running,
        "kv_usage": None if metrics is None else metrics.kv_usage,
        "metrics_age_s": view.metrics_age,
        "metrics_stale": view.metrics_stale,
    }


def _state(replica: Upstream) -> str:
    if replica.leaving:
        return "leaving"
    if replica.draining:
        return "draining"
    return "active" if replica.healthy else "ejected"


def replicas_body(gw: Gateway) -> dict[str, Any]:
    return {
        "strategy": gw.strategy.name,
        "replicas": [replica_state(gw, r) for r in gw.pool],
        # The process that answered: with several workers, whose view this is.
        "worker": os.getpid(),
    }


def _membership(gw: Gateway) -> Membership:
    assert gw.membership is not None  # set by the lifespan before any request
    return gw.membership


def build_admin() -> APIRouter:
    admin = APIRouter(prefix="/admin", dependencies=[Depends(require_admin_key)])

    @admin.get(
        "/replicas",
        responses={**json_body(ReplicasBody, "Every replica's state"), **errors()},
    )
    def list_replicas(gw: GatewayDep) -> Response:
        return json_response(replicas_body(gw))

    @admin.post(
        "/replicas",
        status_code=201,
        dependencies=[Depends(require_one_worker)],
        responses={
            201: {"model": ReplicaState, "description": "Added; its first health check done"},
            **json_body(ReplicaState, "It was there already with this URL"),
            **errors(),
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": EntryBody.model_json_schema()}},
            }
        },
    )
    async def add_replica(gw: GatewayDep, entry: Annotated[dict[str, Any], Body()]) -> Response:
        try:
            spec = parse_entry(entry)
        except ConfigError as exc:
            raise InvalidRequest(f"replica: {exc}") from None
        replica, new = await _membership(gw).add(spec, "admin")
        return json_response(replica_state(gw, replica), 201 if new else 200)

    @admin.delete(
        "/replicas/{name}",
        dependencies=[Depends(require_one_worker)],
        responses={
            **json_body(RemovalBody, "Gone, or leaving once its requests in flight finish"),
            **errors(),
        },
    )
    def remove_replica(name: str, gw: GatewayDep) -> Response:
        membership = _membership(gw)
        in_flight = membership.get(name).in_flight
        gone = membership.remove(name)
        return json_response(
            {"name": name, "state": "removed" if gone else "leaving", "in_flight": in_flight}
        )

    @admin.post(
        "/replicas/{name}/drain",
        dependencies=[Depends(require_one_worker)],
        responses={**json_body(ReplicaState, "Draining: no new requests"), **errors()},
    )
    def drain_replica(name: str, gw: GatewayDep) -> Response:
        return json_response(replica_state(gw, _membership(gw).drain(name, True)))

    @admin.post(
        "/replicas/{name}/resume",
        dependencies=[Depends(require_one_worker)],
        responses={**json_body(ReplicaState, "Routed to again (when healthy)"), **errors()},
    )
    def resume_replica(name: str, gw: GatewayDep) -> Response:
        return json_response(replica_state(gw, _membership(gw).drain(name, False)))

    @admin.put(
        "/strategy",
        dependencies=[Depends(require_one_worker)],
        responses={**json_body(StrategyBody, "The strategy now in force"), **errors()},
    )
    def switch_strategy(change: StrategyChange, gw: GatewayDep) -> Response:
        try:
            gw.switch_strategy(change.strategy, change.options)
        except routers.StrategyNotFound as exc:
            raise InvalidRequest(str(exc), param="strategy") from None
        except routers.StrategyOptionsError as exc:
            raise InvalidRequest(str(exc), param="options") from None
        gw.log.info("strategy_switched", strategy=gw.strategy.name)
        return json_response({"strategy": gw.strategy.name})

    return admin
