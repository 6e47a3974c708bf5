"""The OpenAI API as vLLM speaks it: request validation, error bodies, response shapes.

Shapes follow vLLM's `vllm/entrypoints/openai/protocol.py`: ids `chatcmpl-`/`cmpl-`,
objects `chat.completion`, `chat.completion.chunk`, `text_completion`, errors
`{"error": {"message", "type", "param", "code"}}` with the HTTP status as `code`.
Stream chunks are built from per-request byte templates, because formatting one
is on the hot path of every streamed token.
"""

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from loadtest.sim.tokenizer import Approximate, PromptEncoder

APPROXIMATE = Approximate()

Kind = Literal["chat", "completion"]

ERROR_TYPES = {
    400: "BadRequestError",
    404: "NotFoundError",
    405: "MethodNotAllowed",
    413: "BadRequestError",
    422: "BadRequestError",
    429: "RateLimitError",
    500: "InternalServerError",
    502: "BadGatewayError",
    503: "ServiceUnavailableError",
    504: "GatewayTimeoutError",
}


class ApiError(Exception):
    """An error answered in OpenAI's shape with `status`."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param

    def body(self) -> bytes:
        return error_body(self.status, self.message, self.param)


def error_body(status: int, message: str, param: str | None = None) -> bytes:
    kind = ERROR_TYPES.get(status, "BadRequestError")
    return orjson.dumps(
        {"error": {"message": message, "type": kind, "param": param, "code": status}}
    )


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """A validated chat or completion request, reduced to what the simulator uses."""

    kind: Kind
    model: str
    prompt_token_ids: list[int]
    max_tokens: int
    ignore_eos: bool
    stream: bool
    include_usage: bool
    seed: int | None


def parse_generation(
    kind: Kind,
    raw: bytes,
    *,
    served_model: str | None,
    max_model_len: int,
    encoder: PromptEncoder = APPROXIMATE,
) -> GenerationRequest:
    """Validate a request body; ApiError (400/404) when it is not one vLLM would serve.
    `served_model` None leaves the model name to the caller to check. The prompt is
    counted with `encoder` (the approximate tokenizer, or the model's own)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    model = body.get("model")
    if model is None:
        raise ApiError(400, "the `model` field is required", "model")
    if not isinstance(model, str):
        raise ApiError(400, "`model` must be a string", "model")
    if served_model is not None and model != served_model:
        raise ApiError(404, f"The model `{model}` does not exist.", "model")
    _check_n(body.get("n"))
    stream = _optional_bool(body, "stream")
    ignore_eos = _optional_bool(body, "ignore_eos")
    include_usage = _stream_options(body.get("stream_options"), stream)
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ApiError(400, "`seed` must be an integer", "seed")
    if kind == "chat":
        prompt = encoder.chat(checked_messages(body.get("messages")))
        max_tokens = _max_tokens(body, ("max_completion_tokens", "max_tokens"))
    else:
        prompt = _completion_prompt(body.get("prompt"), encoder)
        max_tokens = _max_tokens(body, ("max_tokens",))
    max_tokens = _fit_context(len(prompt), max_tokens, max_model_len)
    return GenerationRequest(
        kind, model, prompt, max_tokens, ignore_eos, stream, include_usage, seed
    )


def _optional_bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ApiError(400, f"`{name}` must be true or false", name)
    return value


def _check_n(n: Any) -> None:
    if n is None or (isinstance(n, int) and not isinstance(n, bool) and n == 1):
        return
    raise ApiError(400, "only n=1 is supported by this server", "n")


def _stream_options(options: Any, stream: bool) -> bool:
    if options is None:
        return False
    if not stream:
        raise ApiError(
            400, "Stream options can only be defined when `stream=True`.", "stream_options"
        )
    if not isinstance(options, dict):
        raise ApiError(400, "`stream_options` must be an object", "stream_options")
    include = options.get("include_usage", False)
    if not isinstance(include, bool):
        message = "`stream_options.include_usage` must be true or false"
        raise ApiError(400, message, "stream_options")
    return include


def _max_tokens(body: dict[str, Any], names: Sequence[str]) -> int | None:
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise ApiError(400, f"`{name}` must be an integer", name)
        if value < 1:
            raise ApiError(400, f"`{name}` must be at least 1, got {value}.", name)
        return value
    return None


def _fit_context(prompt_len: int, max_tokens: int | None, max_model_len: int) -> int:
    if prompt_len >= max_model_len:
        raise ApiError(
            400,
            f"This model's maximum context length is {max_model_len} tokens. However, your "
            f"request has {prompt_len} input tokens. Please reduce the length of the input.",
            "messages",
        )
    if max_tokens is None:
        return max_model_len - prompt_len
    if prompt_len + max_tokens > max_model_len:
        raise ApiError(
            400,
            f"This model's maximum context length is {max_model_len} tokens. However, you "
            f"requested {prompt_len + max_tokens} tokens ({prompt_len} in the messages, "
            f"{max_tokens} in the completion). Please reduce the length of the messages "
            "or completion.",
            "max_tokens",
        )
    return max_tokens


def checked_messages(messages: Any) -> list[dict[str, Any]]:
    """`messages` if it is a list of message objects with text content; else ApiError."""
    if not isinstance(messages, list):
        raise ApiError(400, "`messages` must be a list of message objects", "messages")
    if not messages:
        raise ApiError(400, "`messages` must not be empty", "messages")
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ApiError(400, "each message must be an object with a `role`", "messages")
        _check_content(message.get("content"))
    return messages


def _check_content(content: Any) -> None:
    if content is None or isinstance(content, str):
        return
    if not isinstance(content, list):
        raise ApiError(400, "message `content` must be a string or a list of parts", "messages")
    for part in content:
        if not isinstance(part, dict) or part.get("type") != "text":
            raise ApiError(400, "only text content parts are supported", "messages")
        if not isinstance(part.get("text"), str):
            raise ApiError(400, "a text content part needs a string `text`", "messages")


def _completion_prompt(prompt: Any, encoder: PromptEncoder) -> list[int]:
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if isinstance(prompt, str):
        return encoder.completion(prompt)
    if (
        isinstance(prompt, list)
        and prompt
        and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in prompt)
    ):
        return list(prompt)
    if prompt is None:
        raise ApiError(400, "the `prompt` field is required", "prompt")
    raise ApiError(
        400, "`prompt` must be a string or a list of token ids (one prompt only)", "prompt"
    )


class ResponseShapes:
    """Byte templates for one request's stream chunks and its final JSON body."""

    def __init__(
        self,
        request: GenerationRequest,
        request_id: str | None = None,
        *,
        fingerprint: str | None = None,
        role_every_chunk: bool = False,
    ) -> None:
        """`fingerprint`: a system_fingerprint in every chunk and body (Ollama's
        "fp_ollama"); `role_every_chunk`: `delta.role` in every chat chunk (Ollama)."""
        self.kind = request.kind
        chat = request.kind == "chat"
        self.id = request_id or (
            f"chatcmpl-{uuid.uuid4().hex}" if chat else f"cmpl-{uuid.uuid4().hex}"
        )
        self.created = int(time.time())
        self.model = request.model
        self.fingerprint = fingerprint
        self.prompt_tokens = len(request.prompt_token_ids)
        obj = "chat.completion.chunk" if chat else "text_completion"
        fields: dict[str, Any] = {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
        }
        if fingerprint is not None:
            fields["system_fingerprint"] = fingerprint
        head = orjson.dumps(fields)[:-1]
        self._head = b"data: " + head + b',"choices":[{"index":0,'
        self._text_key = b'"delta":{"content":' if chat else b'"text":'
        if chat and role_every_chunk:
            self._text_key = b'"delta":{"role":"assistant","content":'
        self._text_end = b"}," if chat else b","
        self._usage_head = b"data: " + head + b',"choices":[],"usage":'

    def role_chunk(self) -> bytes:
        """vLLM's first chat chunk: the assistant role and empty content."""
        delta = b'"delta":{"role":"assistant","content":""},'
        return self._head + delta + b'"logprobs":null,"finish_reason":null}]}\n\n'

    def text_chunk(self, text: str, finish_reason: str | None = None) -> bytes:
        reason = b"null" if finish_reason is None else b'"' + finish_reason.encode() + b'"'
        return b"".join(
            (
                self._head,
                self._text_key,
                orjson.dumps(text),
                self._text_end,
                b'"logprobs":null,"finish_reason":',
                reason,
                b',"stop_reason":null}]}\n\n',
            )
        )

    def usage_chunk(self, completion_tokens: int) -> bytes:
        return self._usage_head + orjson.dumps(self.usage(completion_tokens)) + b"}\n\n"

    def usage(self, completion_tokens: int) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
            "completion_tokens": completion_tokens,
            "prompt_tokens_details": None,
        }

    def full_body(self, text: str, finish_reason: str, completion_tokens: int) -> bytes:
        """The non-streaming response."""
        choice: dict[str, Any]
        if self.kind == "chat":
            message: dict[str, Any] = {
                "role": "assistant",
                "content": text,
                "refusal": None,
                "annotations": None,
                "audio": None,
                "function_call": None,
                "tool_calls": [],
                "reasoning_content": None,
            }
            choice = {"index": 0, "message": message, "logprobs": None}
        else:
            choice = {"index": 0, "text": text, "logprobs": None}
        choice.update(finish_reason=finish_reason, stop_reason=None)
        body = {
            "id": self.id,
            "object": "chat.completion" if self.kind == "chat" else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "service_tier": None,
            "system_fingerprint": self.fingerprint,
            "usage": self.usage(completion_tokens),
            "prompt_logprobs": None,
            "kv_transfer_params": None,
        }
        return orjson.dumps(body)


DONE = b"data: [DONE]\n\n"


def models_body(model: str, max_model_len: int, created: int) -> bytes:
    card = {
        "id": model,
        "object": "model",
        "created": created,
        "owned_by": "vllm",
        "root": model,
        "parent": None,
        "max_model_len": max_model_len,
        "permission": [
            {
                "id": f"modelperm-{uuid.uuid4().hex}",
                "object": "model_permission",
                "created": created,
                "allow_create_engine": False,
                "allow_sampling": True,
                "allow_logprobs": True,
                "allow_search_indices": False,
                "allow_view": True,
                "allow_fine_tuning": False,
                "organization": "*",
                "group": None,
                "is_blocking": False,
            }
        ],
    }
    return orjson.dumps({"object": "list", "data": [card]})
