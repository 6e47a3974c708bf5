"""/admin: the replicas' state, and switching the strategy at run time.

Guarded by GATEWAY_ADMIN_KEY (Bearer) when it is set.
"""

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

import routers
from gateway.api import GatewayDep, json_response
from gateway.auth import check_bearer
from gateway.describe import ReplicasBody, StrategyBody, errors, json_body
from gateway.errors import InvalidRequest
from gateway.state import Gateway


class StrategyChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    strategy: str
    options: dict[str, Any] | None = None


def require_admin_key(request: Request, gw: GatewayDep) -> None:
    value = request.headers.get("authorization")
    check_bearer(None if value is None else value.encode("latin-1"), gw.admin_keys, "admin key")


def replicas_body(gw: Gateway) -> dict[str, Any]:
    replicas = []
    for replica in gw.pool:
        view = gw.pool.view(replica)
        metrics = replica.metrics
        replicas.append(
            {
                "name": replica.id,
                "url": replica.url,
                "kind": None if replica.kind is None else replica.kind.name,
                "kind_verified": replica.kind_verified,
                "aliases": dict(replica.aliases),
                "models": list(replica.models),
                "healthy": replica.healthy,
                "in_flight": replica.in_flight,
                "waiting": None if metrics is None else metrics.waiting,
                "running": None if metrics is None else metrics.running,
                "kv_usage": None if metrics is None else metrics.kv_usage,
                "metrics_age_s": view.metrics_age,
                "metrics_stale": view.metrics_stale,
            }
        )
    return {"strategy": gw.strategy.name, "replicas": replicas}


def build_admin() -> APIRouter:
    admin = APIRouter(prefix="/admin", dependencies=[Depends(require_admin_key)])

    @admin.get(
        "/replicas",
        responses={**json_body(ReplicasBody, "Every replica's state"), **errors()},
    )
    def list_replicas(gw: GatewayDep) -> Response:
        return json_response(replicas_body(gw))

    @admin.put(
        "/strategy",
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
