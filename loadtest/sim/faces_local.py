"""The servers people run on one box, as a simulated replica presents them (faces.py has
the others and the base): llama-cpp-python and Ollama. Sources: abetlen/llama-cpp-python
llama_cpp/server/app.py; ollama/ollama server/routes.go, openai/openai.go, server/sched.go."""

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

import orjson

from loadtest.sim.faces import HTML, TEXT, VERSIONS, Face, Facts, Page, fastapi_404, json_page

LLAMA_CPP_PYTHON_TITLE = "🦙 llama.cpp Python API"
OLLAMA_BUSY = "server busy, please try again.  maximum pending requests exceeded"


class LlamaCppPythonFace(Face):
    name = "llama-cpp-python"
    health_paths: ClassVar[dict[str, tuple[str, ...]]] = {}
    metrics_default = None
    stream_usage = False
    serial = True

    def pages(self) -> dict[str, tuple[tuple[str, ...], Callable[[Facts], Page]]]:
        return {"/openapi.json": (("GET",), self.openapi), "/docs": (("GET",), self.docs)}

    def openapi(self, facts: Facts) -> Page:
        info = {"title": LLAMA_CPP_PYTHON_TITLE, "version": VERSIONS["llama-cpp-python"]}
        paths: dict[str, Any] = {
            p: {} for p in ("/v1/completions", "/v1/chat/completions", "/v1/models")
        }
        return json_page({"openapi": "3.1.0", "info": info, "paths": paths})

    def docs(self, facts: Facts) -> Page:
        return Page(200, HTML, f"<title>{LLAMA_CPP_PYTHON_TITLE} - Swagger UI</title>".encode())

    def model_for(self, requested: str, served: str) -> str | None:
        return served  # an unknown alias silently gets the default model

    def not_found(self, path: str) -> Page:
        return fastapi_404(path)

    def models(self, facts: Facts) -> bytes:
        card = {"id": facts.model, "object": "model", "owned_by": "me", "permissions": []}
        return orjson.dumps({"object": "list", "data": [card]})


class OllamaFace(Face):
    name = "ollama"
    health_paths: ClassVar[dict[str, tuple[str, ...]]] = {}
    metrics_default = None
    honours_ignore_eos = False
    role_every_chunk = True
    fingerprint = "fp_ollama"

    def __init__(self) -> None:
        self._rng = random.Random()

    def pages(self) -> dict[str, tuple[tuple[str, ...], Callable[[Facts], Page]]]:
        return {
            "/": (("GET", "HEAD"), lambda facts: Page(200, TEXT, b"Ollama is running")),
            "/api/version": (("GET", "HEAD"), lambda f: json_page({"version": VERSIONS["ollama"]})),
            "/api/tags": (("GET", "HEAD"), self.tags),
            "/api/ps": (("GET",), self.ps),
        }

    def _entry(self, facts: Facts) -> dict[str, Any]:
        family = facts.model.split(":")[0].rsplit("/", 1)[-1]
        return {
            "name": facts.model,
            "model": facts.model,
            "size": facts.weight_bytes,
            "digest": uuid.uuid5(uuid.NAMESPACE_URL, facts.model).hex * 2,
            "details": {
                "parent_model": "",
                "format": "gguf",
                "family": family,
                "families": [family],
                "parameter_size": "",
                "quantization_level": "F16",
            },
        }

    def tags(self, facts: Facts) -> Page:
        modified = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(facts.created))
        return json_page({"models": [{**self._entry(facts), "modified_at": modified}]})

    def ps(self, facts: Facts) -> Page:
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 300))
        entry = {**self._entry(facts), "expires_at": expires, "size_vram": facts.weight_bytes}
        return json_page({"models": [entry]})

    def unknown_model(self, requested: str) -> str:
        return f"model '{requested}' not found"

    def error_body(self, status: int, message: str, param: str | None = None) -> bytes:
        kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
        return orjson.dumps(
            {"error": {"message": message, "type": kind, "param": None, "code": None}}
        )

    def not_found(self, path: str) -> Page:
        return Page(404, TEXT, b"404 page not found")

    def models(self, facts: Facts) -> bytes:
        # owned_by is the name's namespace: "library" for official models.
        namespace = facts.model.split("/")[-2] if "/" in facts.model else "library"
        card = {"id": facts.model, "object": "model", "created": facts.created}
        return orjson.dumps({"object": "list", "data": [{**card, "owned_by": namespace}]})

    def response_id(self, chat: bool) -> str | None:
        # rand.Intn(999) upstream: ids repeat.
        return f"{'chatcmpl' if chat else 'cmpl'}-{self._rng.randrange(999)}"


class ModelLock:
    """llama-cpp-python's two locks (get_llama_proxy in its app.py): a request waits on the
    outer one for the inner one, and holds the inner one while it is served; a stream that
    sees the outer one taken knows another request waits (interrupt_requests). `serial`
    False: no lock at all (every other server)."""

    def __init__(self, *, serial: bool) -> None:
        self._serial = serial
        self._outer = asyncio.Lock()
        self._inner = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        if not self._serial:
            yield
            return
        async with self._outer:
            await self._inner.acquire()
        try:
            yield
        finally:
            self._inner.release()

    def wanted(self) -> bool:
        """Another request waits for the model."""
        return self._serial and self._outer.locked()
