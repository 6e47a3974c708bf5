"""One batch input line -> the request to send.

A line is either an OpenAI request body (chat when it has `messages`, completions when it has
`prompt`), with an optional `custom_id`, or a line of the OpenAI Batch API input format
(`custom_id`, `method`, `url`, `body`; the BatchRequestInput schema of
github.com/openai/openai-openapi). A body line without `custom_id` is named `line-<n>`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

ENDPOINTS = ("/v1/chat/completions", "/v1/completions")
BATCH_FIELDS = frozenset(("custom_id", "method", "url", "body"))
_BOM = b"\xef\xbb\xbf"


class InvalidLine(ValueError):
    """A line that is not a request this client can send; the message names the field."""


@dataclass(frozen=True, slots=True)
class Task:
    """One request of the job."""

    line: int  # 1-based line number in the input file
    custom_id: str
    url: str  # one of ENDPOINTS
    body: bytes  # the JSON body, as sent


def digest(custom_id: str) -> bytes:
    """16 bytes that stand for a custom_id in sets of millions (collisions: ~n^2 / 2^129)."""
    return hashlib.blake2b(custom_id.encode(), digest_size=16).digest()


def is_blank(raw: bytes) -> bool:
    return not raw.strip()


def parse_line(raw: bytes, line: int) -> Task:
    """The task on input line `line` (1-based); InvalidLine when it is not one."""
    if line == 1 and raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    raw = raw.strip()
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidLine(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidLine("must be a JSON object (a request body or a Batch API line)")
    if "body" in document or "url" in document or "method" in document:
        return _batch_line(document, line)
    return _body_line(document, raw, line)


def _batch_line(document: dict[str, Any], line: int) -> Task:
    unknown = sorted(set(document) - BATCH_FIELDS)
    if unknown:
        raise InvalidLine(
            f"unknown field {unknown[0]!r}: a Batch API line has custom_id, method, url, body"
        )
    custom_id = document.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise InvalidLine(
            "custom_id is required in a Batch API line and must be a non-empty string"
        )
    if document.get("method") != "POST":
        raise InvalidLine(f'method must be "POST", got {document.get("method")!r}')
    url = document.get("url")
    if url not in ENDPOINTS:
        raise InvalidLine(f"url must be one of {', '.join(ENDPOINTS)}, got {url!r}")
    body = document.get("body")
    if not isinstance(body, dict):
        raise InvalidLine("body must be a JSON object (the request body)")
    _check_body(body, url)
    return Task(line, custom_id, url, orjson.dumps(body))


def _body_line(document: dict[str, Any], raw: bytes, line: int) -> Task:
    if "custom_id" in document:
        custom_id = document.pop("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            raise InvalidLine("custom_id must be a non-empty string")
        # The target would not know the field: send the body without it.
        body = orjson.dumps(document)
    else:
        custom_id, body = f"line-{line}", raw
    has_messages, has_prompt = "messages" in document, "prompt" in document
    if has_messages == has_prompt:
        raise InvalidLine(
            "a request body needs `messages` (chat) or `prompt` (completions), not both"
            if has_messages
            else "a request body needs `messages` (chat) or `prompt` (completions)"
        )
    url = ENDPOINTS[0] if has_messages else ENDPOINTS[1]
    _check_body(document, url)
    return Task(line, custom_id, url, body)


def _check_body(body: dict[str, Any], url: str) -> None:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidLine("body.model is required and must be a non-empty string")
    if body.get("stream") not in (None, False):
        raise InvalidLine("body.stream must be false or absent: a batch stores whole responses")
    if url == ENDPOINTS[0]:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidLine("body.messages must be a non-empty list of messages")
    elif "prompt" not in body:
        raise InvalidLine("body.prompt is required for /v1/completions")
