"""Which server a simulated replica presents itself as: its routes, listings, pages and errors.

The engine underneath is the same; what differs is what a client (or a gateway) sees:
- vllm: vLLM's OpenAI server (the default).
- sglang: /health (a one-token generation upstream, so it answers after `health_delay`),
  /health_generate, /ping, /get_model_info and /model_info, /get_server_info and
  /server_info, /get_load; /v1/models `owned_by: "sglang"`; any `model` is served and
  echoed; /metrics only with metrics on (--enable-metrics upstream); flat error objects.
  Source: sgl-project/sglang python/sglang/srt/entrypoints/http_server.py.
- llamacpp: llama.cpp's llama-server: /health `{"status":"ok"}` (503 "Loading model"),
  /props, /slots, /v1/models and /models with `owned_by: "llamacpp"`, `meta` and an
  Ollama-style `models` array; /metrics only with metrics on (--metrics), 501
  not_supported_error otherwise; `{"error":{"code","message","type"}}` errors; any `model`
  is served and echoed. Source: ggml-org/llama.cpp tools/server/README.md.
The two servers people run on one box are in faces_local.py:
- llama-cpp-python: only /v1/*, /openapi.json and /docs (no /health, /metrics, /ping);
  /v1/models `owned_by: "me"`; an unknown `model` gets the default one; one request at a
  time, and a waiting request (a /v1/models call included) ends the stream in progress;
  no usage in streams. Source: abetlen/llama-cpp-python llama_cpp/server/app.py.
- ollama: `GET /` "Ollama is running", /api/version, /api/tags, /api/ps, /v1/models
  `owned_by` the model's namespace; chunks carry `delta.role` every time and
  `system_fingerprint: "fp_ollama"`; `ignore_eos` is ignored; 404 not_found_error for an
  unknown model; 503 "server busy" beyond num_parallel + max_queue; no /health, no
  /metrics (Gin's text 404). Sources: ollama/ollama server/routes.go, openai/openai.go,
  server/sched.go.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, ClassVar

import orjson

from loadtest.sim.api import error_body, models_body
from loadtest.sim.types import EngineStats

FACES = ("vllm", "sglang", "llamacpp", "llama-cpp-python", "ollama")
JSON = [(b"content-type", b"application/json")]
TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
HTML = [(b"content-type", b"text/html; charset=utf-8")]
# Versions the simulated servers report (plausible, not checked against anything).
VERSIONS = {
    "sglang": "0.5.9",
    "llamacpp": "b6900",
    "llama-cpp-python": "0.3.16",
    "ollama": "0.20.3",
}


@dataclass(frozen=True)
class Page:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


def json_page(body: Any, status: int = 200) -> Page:
    return Page(status, JSON, orjson.dumps(body))


@dataclass(frozen=True)
class Facts:
    """What a replica's pages report about it right now."""

    model: str
    max_model_len: int
    created: int
    slots: int
    weight_bytes: int
    stats: EngineStats
    # vllm-sim's own settings, shown on vLLM's /version.
    sim: dict[str, Any] = field(default_factory=dict)


class Face:
    """vLLM: the default face, and the base the others change."""

    name = "vllm"
    # Liveness routes and their methods (the health_fail fault makes them fail).
    health_paths: ClassVar[dict[str, tuple[str, ...]]] = {
        "/health": ("GET",),
        "/ping": ("GET", "POST"),
    }
    # None: no /metrics route at all; else whether it is on unless told otherwise.
    metrics_default: bool | None = True
    honours_ignore_eos = True
    stream_usage = True
    role_every_chunk = False
    fingerprint: str | None = None
    serial = False  # one request at a time (llama-cpp-python)

    def pages(self) -> dict[str, tuple[tuple[str, ...], Callable[[Facts], Page]]]:
        return {"/version": (("GET",), self.version)}

    def version(self, facts: Facts) -> Page:
        return json_page({**facts.sim, "simulator": "vllm-sim"})

    def model_for(self, requested: str, served: str) -> str | None:
        """The model a request is served with; None when this server refuses the name."""
        return requested if requested == served else None

    def unknown_model(self, requested: str) -> str:
        return f"The model `{requested}` does not exist."

    def error_body(self, status: int, message: str, param: str | None = None) -> bytes:
        return error_body(status, message, param)

    def not_found(self, path: str) -> Page:
        return Page(404, JSON, self.error_body(404, f"no route for {path}"))

    def models(self, facts: Facts) -> bytes:
        return models_body(facts.model, facts.max_model_len, facts.created)

    def health(self, ok: bool) -> Page:
        if ok:
            return Page(200, [], b"")
        message = "simulated unhealthy replica (fault injection)"
        return Page(503, JSON, self.error_body(503, message))

    def response_id(self, chat: bool) -> str | None:
        return None  # the shapes' own unique id

    def metrics_off(self) -> Page | None:
        """The answer on /metrics when it is switched off (None: no such route)."""
        return None


def fastapi_404(path: str) -> Page:
    return json_page({"detail": "Not Found"}, 404)


class SglangFace(Face):
    name = "sglang"
    health_paths: ClassVar[dict[str, tuple[str, ...]]] = {
        "/health": ("GET",),
        "/health_generate": ("GET",),
    }
    metrics_default = False

    def pages(self) -> dict[str, tuple[tuple[str, ...], Callable[[Facts], Page]]]:
        get = ("GET",)
        return {
            "/ping": (("GET", "POST"), lambda facts: Page(200, [], b"")),
            "/get_model_info": (get, self.model_info),
            "/model_info": (get, self.model_info),
            "/get_server_info": (get, self.server_info),
            "/server_info": (get, self.server_info),
            "/get_load": (get, self.load),
        }

    def model_info(self, facts: Facts) -> Page:
        return json_page(
            {
                "model_path": facts.model,
                "tokenizer_path": facts.model,
                "is_generation": True,
                "preferred_sampling_params": None,
                "weight_version": "default",
            }
        )

    def server_info(self, facts: Facts) -> Page:
        tokens = facts.stats.num_blocks * 16
        rank = {"last_gen_throughput": 0.0, "effective_max_running_requests_per_dp": facts.slots}
        return json_page(
            {
                "model_path": facts.model,
                "served_model_name": facts.model,
                "tp_size": 1,
                "pp_size": 1,
                "dp_size": 1,
                "context_length": None,
                "max_running_requests": facts.slots,
                "max_queued_requests": None,
                "enable_metrics": facts.sim.get("metrics", False),
                "load_balance_method": "round_robin",
                "status": "ready",
                "max_total_num_tokens": tokens,
                "max_req_input_len": facts.max_model_len - 6,
                "internal_states": [rank],
                "version": VERSIONS["sglang"],
            }
        )

    def load(self, facts: Facts) -> Page:
        stats = facts.stats
        return json_page(
            [
                {
                    "dp_rank": 0,
                    "num_reqs": stats.running + stats.waiting,
                    "num_waiting_reqs": stats.waiting,
                    "num_tokens": stats.used_blocks * 16,
                }
            ]
        )

    def model_for(self, requested: str, served: str) -> str | None:
        return requested  # never checked: the `model` field is for OpenAI compatibility

    def error_body(self, status: int, message: str, param: str | None = None) -> bytes:
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
        return orjson.dumps(
            {"object": "error", "message": message, "type": phrase, "param": param, "code": status}
        )

    def not_found(self, path: str) -> Page:
        return fastapi_404(path)

    def models(self, facts: Facts) -> bytes:
        card = {
            "id": facts.model,
            "object": "model",
            "created": facts.created,
            "owned_by": "sglang",
            "root": facts.model,
            "parent": None,
            "max_model_len": facts.max_model_len,
        }
        return orjson.dumps({"object": "list", "data": [card]})

    def health(self, ok: bool) -> Page:
        return Page(200 if ok else 503, [], b"")

    def metrics_off(self) -> Page | None:
        return fastapi_404("/metrics")


_LLAMA_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    501: "not_supported_error",
    503: "unavailable_error",
}


class LlamaServerFace(Face):
    name = "llamacpp"
    health_paths: ClassVar[dict[str, tuple[str, ...]]] = {
        "/health": ("GET",),
        "/v1/health": ("GET",),
    }
    metrics_default = False

    def pages(self) -> dict[str, tuple[tuple[str, ...], Callable[[Facts], Page]]]:
        return {
            "/props": (("GET",), self.props),
            "/slots": (("GET",), self.slots),
            "/models": (("GET",), lambda facts: Page(200, JSON, self.models(facts))),
        }

    def props(self, facts: Facts) -> Page:
        return json_page(
            {
                "default_generation_settings": {"id": 0, "n_ctx": facts.max_model_len},
                "total_slots": facts.slots,
                "model_path": facts.model,
                "chat_template": "",
                "modalities": {"vision": False},
                "build_info": f"{VERSIONS['llamacpp']}-simulated",
                "is_sleeping": False,
            }
        )

    def slots(self, facts: Facts) -> Page:
        busy = facts.stats.running
        return json_page(
            [
                {"id": i, "id_task": -1, "n_ctx": facts.max_model_len, "is_processing": i < busy}
                for i in range(facts.slots)
            ]
        )

    def model_for(self, requested: str, served: str) -> str | None:
        return requested  # single-model mode: the field is echoed, never checked

    def error_body(self, status: int, message: str, param: str | None = None) -> bytes:
        kind = _LLAMA_TYPES.get(status, "server_error")
        return orjson.dumps({"error": {"code": status, "message": message, "type": kind}})

    def not_found(self, path: str) -> Page:
        return Page(404, JSON, self.error_body(404, "File Not Found"))

    def models(self, facts: Facts) -> bytes:
        meta = {"n_ctx_train": facts.max_model_len, "n_ctx": facts.max_model_len}
        details = {
            "parent_model": "",
            "format": "gguf",
            "family": "",
            "families": [""],
            "parameter_size": "",
            "quantization_level": "",
        }
        return orjson.dumps(
            {
                "models": [
                    {
                        "name": facts.model,
                        "model": facts.model,
                        "modified_at": "",
                        "size": "",
                        "digest": "",
                        "type": "model",
                        "description": "",
                        "tags": [""],
                        "capabilities": ["completion"],
                        "parameters": "",
                        "details": details,
                    }
                ],
                "object": "list",
                "data": [
                    {
                        "id": facts.model,
                        "object": "model",
                        "created": facts.created,
                        "owned_by": "llamacpp",
                        "meta": meta,
                    }
                ],
            }
        )

    def health(self, ok: bool) -> Page:
        if ok:
            return json_page({"status": "ok"})
        return Page(503, JSON, self.error_body(503, "Loading model"))

    def metrics_off(self) -> Page | None:
        message = "This server does not support metrics endpoint. Start it with `--metrics`"
        return Page(501, JSON, self.error_body(501, message))


def face_named(name: str) -> Face:
    """A face by name; ValueError listing the known ones."""
    # faces_local builds on Face, so it is imported here rather than at the top.
    from loadtest.sim.faces_local import LlamaCppPythonFace, OllamaFace

    faces: dict[str, type[Face]] = {
        "vllm": Face,
        "sglang": SglangFace,
        "llamacpp": LlamaServerFace,
        "llama-cpp-python": LlamaCppPythonFace,
        "ollama": OllamaFace,
    }
    if name not in faces:
        raise ValueError(f"unknown face {name!r}; one of: {', '.join(FACES)}")
    return faces[name]()
