"""Replica kinds: which inference server a replica is, told by the replicas file or by what
the server answers, and what that means for probing and routing it.

Each kind knows its liveness probe, its model listing, the metric names of its /metrics
(if it has one) and its own way of saying "busy". Sources, per engine:
- vLLM (vllm-project/vllm, vllm/entrypoints/openai/api_server.py): /health 200 with an
  empty body, /version, /v1/models `owned_by: "vllm"`, /metrics always on.
- SGLang (sgl-project/sglang, python/sglang/srt/entrypoints/http_server.py): /health runs
  a one-token generation and answers only when output came back (a loop that sleeps 1 s),
  so it takes a second or more; /get_model_info; /metrics only with --enable-metrics.
- llama.cpp's llama-server (ggml-org/llama.cpp, tools/server/README.md): /health 200
  `{"status":"ok"}`, 503 while loading; /props with `total_slots`; /metrics only with
  --metrics (else 501 not_supported_error). It queues ("defers") requests when its slots
  are full.
- llama-cpp-python (abetlen/llama-cpp-python, llama_cpp/server/app.py): no /health,
  /metrics or /ping; /v1/models `owned_by: "me"` takes the same lock as generation, and by
  default a waiting request interrupts the stream in progress, so liveness is read from
  /openapi.json (its title is "🦙 llama.cpp Python API") and one request goes at a time.
- Ollama (ollama/ollama, server/routes.go): `GET /` answers "Ollama is running",
  /api/version, /api/tags lists the models (its /v1/models says `"data": null` when none
  is pulled); no /health, no /metrics; 503 "server busy" once OLLAMA_MAX_QUEUE requests
  wait (server/sched.go), which is load, not ill health.
- openai: any other OpenAI-compatible URL: /v1/models only, counted locally.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Kind:
    name: str
    # GET; an HTTP 200 means the replica is up.
    health_path: str
    # Where the model names are read: an OpenAI list, or Ollama's /api/tags.
    models_path: str = "/v1/models"
    # The least time the health probe is given (SGLang's /health generates a token).
    health_timeout_floor: float = 0.0
    # turnout.engine_metrics engine whose /metrics names to read; None: no /metrics at
    # all, the strategies use the gateway's own in-flight counts.
    metrics_engine: str | None = None
    # Requests the replica can take at once; None: no limit of its own.
    max_in_flight: int | None = None
    # Statuses that mean "full right now": retried elsewhere, never held against health.
    busy_statuses: frozenset[int] = frozenset()
    # Read the model list only while nothing of ours is in flight there.
    list_when_idle: bool = False


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("vllm", "/health", metrics_engine="vllm"),
        Kind("sglang", "/health", health_timeout_floor=5.0, metrics_engine="sglang"),
        Kind("llamacpp", "/health", metrics_engine="llamacpp"),
        Kind("llama-cpp-python", "/openapi.json", max_in_flight=1, list_when_idle=True),
        Kind("ollama", "/", models_path="/api/tags", busy_statuses=frozenset({503})),
        Kind("openai", "/v1/models"),
    )
}
LLAMA_CPP_PYTHON_TITLE = "🦙 llama.cpp Python API"
OLLAMA_ROOT = "Ollama is running"


@dataclass(frozen=True)
class Detection:
    kind: str
    # What the server answered that says so, for logs and error messages.
    evidence: str


Get = Callable[[str], Awaitable[httpx.Response]]


async def detect(get: Get, listing: httpx.Response | None = None) -> Detection | None:
    """Which kind the server behind `get` (a GET of a path on the replica) is, from its
    answers, cheapest first; None when it does not answer well enough to tell (down, or
    still loading). `listing` is a /v1/models answer already in hand."""
    if listing is None:
        listing = await _try(get, "/v1/models")
        if listing is None:
            return None  # no answer at all: nothing else will answer either
    body = _json(listing)
    data = body.get("data") if isinstance(body, dict) else None
    first = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
    owned_by = first.get("owned_by")
    confirm = _CONFIRM.get(owned_by) if isinstance(owned_by, str) else None
    if confirm is not None:
        kind, probes, check = confirm
        for probe in probes:
            answer = _json(await _try(get, probe))
            if check(answer):
                return Detection(kind, f"/v1/models owned_by {owned_by!r} and {probe} answers")
    version = _json(await _try(get, "/api/version"))
    if isinstance(version, dict) and "version" in version:
        root = await _try(get, "/")
        if root is not None and root.status_code == 200 and root.text.startswith(OLLAMA_ROOT):
            return Detection("ollama", f"/ answers {OLLAMA_ROOT!r} and /api/version answers")
    if isinstance(body, dict) and "data" in body and (data is None or isinstance(data, list)):
        shown = f"owned_by {owned_by!r}" if isinstance(owned_by, str) else "a model list"
        return Detection("openai", f"/v1/models answers ({shown}); no engine recognised")
    return None


def mismatch(configured: Kind, detected: Detection) -> str | None:
    """Why the configured kind cannot be right for what the server answered, or None.
    `openai` fits every server: they all speak the OpenAI API."""
    if configured.name in ("openai", detected.kind):
        return None
    return (
        f"kind is {configured.name!r} but the server answers like {detected.kind!r} "
        f"({detected.evidence})"
    )


def _has(key: str) -> Callable[[Any], bool]:
    return lambda answer: isinstance(answer, dict) and key in answer


def _is_llama_cpp_python(answer: Any) -> bool:
    info = answer.get("info") if isinstance(answer, dict) else None
    return isinstance(info, dict) and info.get("title") == LLAMA_CPP_PYTHON_TITLE


# owned_by in /v1/models -> (kind, probes to confirm it, what a confirming answer holds).
_CONFIRM: dict[str, tuple[str, tuple[str, ...], Callable[[Any], bool]]] = {
    "vllm": ("vllm", ("/version",), _has("version")),
    # /get_model_info is deprecated in newer SGLang in favour of /model_info.
    "sglang": ("sglang", ("/model_info", "/get_model_info"), _has("model_path")),
    "llamacpp": ("llamacpp", ("/props",), _has("total_slots")),
    "me": ("llama-cpp-python", ("/openapi.json",), _is_llama_cpp_python),
}


async def _try(get: Get, path: str) -> httpx.Response | None:
    try:
        return await get(path)
    except Exception:  # refused, timed out: this probe tells nothing
        return None


def _json(response: httpx.Response | None) -> Any:
    if response is None or response.status_code != 200:
        return None
    try:
        return response.json()
    except ValueError:
        return None
