"""What the gateway's own endpoints answer, for its OpenAPI description (GET /openapi.json).

Pydantic models here describe; the handlers build their bodies directly. Every error is
OpenAI's shape, so each operation documents 4XX (and 5XX where it can happen) with it
(which also keeps FastAPI from describing a 422 the gateway never sends).
"""

from typing import Any, Literal

from pydantic import BaseModel, Field

import routers


class OpenAIError(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(BaseModel):
    error: OpenAIError


class ModelEntry(BaseModel):
    id: str
    object: str
    created: int
    owned_by: str
    max_model_len: int | None = None


class ModelList(BaseModel):
    object: str
    data: list[ModelEntry]


class HealthBody(BaseModel):
    status: str
    healthy_replicas: int
    replicas: int


class ReplicaState(BaseModel):
    name: str
    url: str
    models: list[str]
    healthy: bool
    state: Literal["active", "ejected", "draining", "leaving"]
    source: str
    in_flight: int
    waiting: float | None
    running: float | None
    kv_usage: float | None
    metrics_age_s: float | None
    metrics_stale: bool


class ReplicasBody(BaseModel):
    strategy: str
    replicas: list[ReplicaState]
    worker: int = Field(description="The pid of the worker process that answered.")


class RemovalBody(BaseModel):
    name: str
    state: Literal["removed", "leaving"]
    in_flight: int


class StrategyBody(BaseModel):
    strategy: str


def errors(*server: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for an operation: 4XX in OpenAI's shape, and the given 5xx statuses."""
    described: dict[int | str, dict[str, Any]] = {
        "4XX": {"model": ErrorBody, "description": "Refused, in OpenAI's error shape"}
    }
    for status in server:
        described[status] = {"model": ErrorBody, "description": "Failed, in OpenAI's shape"}
    return described


def json_body(model: type[BaseModel], description: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"model": model, "description": description}}


def with_strategy_names(description: dict[str, Any]) -> dict[str, Any]:
    """Name the strategies PUT /admin/strategy takes (plugins found at start-up, so not
    known to its model) in FastAPI's description of the app."""
    change = description.get("components", {}).get("schemas", {}).get("StrategyChange")
    if change is not None:
        change["properties"]["strategy"]["enum"] = routers.available()
    return description
