"""The gateway's own endpoints besides the relay: models, health, metrics.

The relayed POST paths are plain ASGI (gateway/proxy.py) and are mounted here too, so
that the app's routing table is read in one place.
"""

import os
import time
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from starlette.routing import Route

from gateway.describe import HealthBody, ModelList, errors, json_body
from gateway.proxy import ProxyEndpoint
from gateway.state import Gateway, gateway_of
from gateway.telemetry import CONTENT_TYPE

RELAYED_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")


def get_gateway(request: Request) -> Gateway:
    return gateway_of(request.state)


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


def _authorization(request: Request) -> bytes | None:
    value = request.headers.get("authorization")
    return None if value is None else value.encode("latin-1")


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def require_client_key(request: Request, gw: GatewayDep) -> None:
    gw.keys.check(_authorization(request))


def models_body(gw: Gateway) -> dict[str, Any]:
    """The union of the healthy replicas' models, each once, with its max_model_len (the
    smallest across replicas, so a request that fits is accepted by every one of them)."""
    lengths: dict[str, int | None] = {}
    for replica in gw.pool:
        if not gw.pool.available(replica):  # ejected or draining
            continue
        for model in replica.models:
            length = replica.max_model_len.get(model)
            known = lengths.get(model)
            if model not in lengths or (length is not None and (known is None or length < known)):
                lengths[model] = length
    data = []
    created = int(time.time())
    for model in sorted(lengths):
        entry: dict[str, Any] = {
            "id": model,
            "object": "model",
            "created": created,
            "owned_by": "turnout",
        }
        if lengths[model] is not None:
            entry["max_model_len"] = lengths[model]
        data.append(entry)
    return {"object": "list", "data": data}


def build_api() -> APIRouter:
    api = APIRouter()

    @api.get(
        "/v1/models",
        dependencies=[Depends(require_client_key)],
        responses={**json_body(ModelList, "The healthy replicas' models"), **errors()},
    )
    def list_models(gw: GatewayDep) -> Response:
        return json_response(models_body(gw))

    @api.get(
        "/health",
        responses={
            **json_body(HealthBody, "At least one replica is healthy"),
            503: {"model": HealthBody, "description": "No replica is healthy"},
            **errors(),
        },
    )
    def health(gw: GatewayDep) -> Response:
        healthy = sum(1 for replica in gw.pool if replica.healthy)
        body = {
            "status": "ok" if healthy else "unavailable",
            "healthy_replicas": healthy,
            "replicas": len(gw.pool),
        }
        return json_response(body, 200 if healthy else 503)

    @api.get(
        "/metrics",
        responses={
            200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
            **errors(),
        },
    )
    def metrics(gw: GatewayDep) -> Response:
        # With several workers, which one answered (the figures are all workers' alike).
        headers = {"x-turnout-worker": str(os.getpid())} if gw.settings.workers > 1 else None
        return Response(gw.telemetry.render(), media_type=CONTENT_TYPE, headers=headers)

    return api


def mount_relay(app: FastAPI) -> None:
    """The relayed POST paths, as plain ASGI routes (no FastAPI request handling)."""
    endpoint = ProxyEndpoint()
    for path in RELAYED_PATHS:
        app.router.routes.append(Route(path, endpoint, methods=["POST"]))
