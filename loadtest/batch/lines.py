"""Output lines in the OpenAI Batch output format (the BatchRequestOutput schema of
github.com/openai/openai-openapi), so existing tooling reads them:

    {"id": "batch_req_...", "custom_id": "...",
     "response": {"status_code": 200, "request_id": "...", "body": {...}}, "error": null}

An HTTP answer (any status, the body as the target sent it) goes in `response`, as OpenAI does
for a 400 (openai/openai-openapi issue 302); a failure without one (connection refused, timeout,
deadline) has `"response": null` and `error` {code, message}. Unlike OpenAI, which splits
successes and failures into an output and an error file, both go to one file here, so that one
file tells what is finished.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import orjson

_NEWLINES = (b"\n", b"\r")


@dataclass(frozen=True, slots=True)
class Result:
    """What a line of the output says."""

    custom_id: str
    ok: bool  # an HTTP 200 answer
    prompt_tokens: int
    completion_tokens: int


class LineIds:
    """Unique, cheap line ids: a random prefix per run and a counter."""

    def __init__(self) -> None:
        self._prefix = "batch_req_" + os.urandom(6).hex()
        self._count = 0

    def next(self) -> str:
        self._count += 1
        return f"{self._prefix}{self._count:012x}"


def answer_line(
    line_id: str, custom_id: str, status: int, request_id: str, body: bytes, parsed: Any
) -> bytes:
    """The line for an HTTP answer; `body` is written as sent when it is one line of JSON."""
    raw = body.strip()
    if not isinstance(parsed, dict) or any(c in raw for c in _NEWLINES):
        raw = orjson.dumps(parsed if isinstance(parsed, dict) else _not_json(body))
    return b"".join(
        (
            b'{"id":',
            orjson.dumps(line_id),
            b',"custom_id":',
            orjson.dumps(custom_id),
            b',"response":{"status_code":%d,"request_id":' % status,
            orjson.dumps(request_id),
            b',"body":',
            raw,
            b'},"error":null}\n',
        )
    )


def error_line(line_id: str, custom_id: str, code: str, message: str) -> bytes:
    """The line for a request that failed without an HTTP answer to keep."""
    document = {
        "id": line_id,
        "custom_id": custom_id,
        "response": None,
        "error": {"code": code, "message": message},
    }
    return orjson.dumps(document) + b"\n"


def _not_json(body: bytes) -> dict[str, Any]:
    text = body[:2000].decode("utf-8", "replace")
    return {"error": {"message": text, "type": "invalid_response", "param": None, "code": None}}


def usage(parsed: Any) -> tuple[int, int]:
    """(prompt, completion) tokens of a response body; zeros when it reports none."""
    if isinstance(parsed, dict):
        figures = parsed.get("usage")
        if isinstance(figures, dict):
            prompt, completion = figures.get("prompt_tokens"), figures.get("completion_tokens")
            return (
                prompt if isinstance(prompt, int) else 0,
                completion if isinstance(completion, int) else 0,
            )
    return 0, 0


def read_result(line: bytes) -> Result | None:
    """The result a complete output line records; None when it is not one (a torn write)."""
    if not line.endswith(b"\n"):
        return None
    try:
        document = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict):
        return None
    custom_id = document.get("custom_id")
    response = document.get("response")
    if not isinstance(custom_id, str) or "error" not in document:
        return None
    if response is None:
        return Result(custom_id, False, 0, 0)
    if not isinstance(response, dict) or not isinstance(response.get("status_code"), int):
        return None
    prompt, completion = usage(response.get("body"))
    return Result(custom_id, response["status_code"] == 200, prompt, completion)
