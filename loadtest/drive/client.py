"""Send one scheduled request to an OpenAI-compatible endpoint and measure it.

The HTTP side is loadtest/drive/http.py, chosen by measurement (bench/loadtest_bench.py): at the
generator's targets the client's CPU per request and per streamed chunk decides how late
requests leave.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

import orjson

from loadtest.drive.http import ConnectionPool, Exchange, HttpError, Response
from loadtest.drive.records import ErrorKind, RequestRecord
from loadtest.workload.schedule import Schedule, ScheduledRequest

REPLICA_HEADER = "x-turnout-replica"
REPLICA_HEADER_BYTES = REPLICA_HEADER.encode()
_DATA = b"data:"
_DONE = b"[DONE]"
_SSE_FIELDS = (b":", b"event:", b"id:", b"retry:")


class StreamError(Exception):
    """The response stream broke its format or reported an error."""


def request_body(schedule: Schedule, request: ScheduledRequest) -> bytes:
    """The JSON body for `request`, per the workload's API, streaming and ignore_eos."""
    workload = schedule.workload
    prompt = schedule.prompt(request)
    body: dict[str, Any] = {"model": request.model, "max_tokens": request.max_tokens}
    if workload.api == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    if workload.ignore_eos:
        # vLLM's extension: generate exactly max_tokens, so output lengths follow the workload.
        body["ignore_eos"] = True
    if workload.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return orjson.dumps(body)


def endpoint_url(target_url: str, api: str) -> str:
    base = target_url.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return base + ("/chat/completions" if api == "chat" else "/completions")


class Client:
    """Measures requests against one target. Use as an async context manager."""

    def __init__(
        self,
        target_url: str,
        schedule: Schedule,
        *,
        api_key: str | None = None,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self._schedule = schedule
        url = endpoint_url(target_url, schedule.workload.api)
        self._path = (urlsplit(url).path or "/").encode()
        headers = b"content-type: application/json\r\n"
        if api_key:
            headers += b"authorization: Bearer %s\r\n" % api_key.encode()
        self._headers = headers
        self._timeout_s = schedule.workload.timeout_s
        self._pool = ConnectionPool(url, connect_timeout_s=connect_timeout_s)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._pool.after_read = None
        self._pool.close()

    def call_after_reads(self, hook: Callable[[], None] | None) -> None:
        """Have `hook` called after every read from the target (None: stop)."""
        self._pool.after_read = hook

    def start(
        self, request: ScheduledRequest, *, run_start: float, closed_loop: bool = False
    ) -> Coroutine[Any, Any, RequestRecord]:
        """Send `request` now (on an idle connection, before returning) and return the
        coroutine that measures the rest. Never raises for what the target does.

        Closed loop: the request counts as scheduled when it is sent (no lag).
        """
        reader = _BodyReader(_Measure(0.0), stream=self._schedule.workload.stream)
        message = self._pool.message(
            b"POST", self._path, self._headers, request_body(self._schedule, request)
        )
        response = Response()
        reader.measure.sent = time.perf_counter()
        begun = self._pool.begin(message, reader.feed, response)
        return self._finish(request, message, reader, response, begun, run_start, closed_loop)

    async def send(
        self, request: ScheduledRequest, *, run_start: float, closed_loop: bool = False
    ) -> RequestRecord:
        """Send `request` now and measure it (see `start`)."""
        return await self.start(request, run_start=run_start, closed_loop=closed_loop)

    async def _finish(
        self,
        request: ScheduledRequest,
        message: bytes,
        reader: _BodyReader,
        response: Response,
        begun: Exchange | None,
        run_start: float,
        closed_loop: bool,
    ) -> RequestRecord:
        kind: ErrorKind | None = None
        detail: str | None = None
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._pool.finish(message, reader.feed, response, begun)
            if response.status >= 400:
                kind = "http_5xx" if response.status >= 500 else "http_4xx"
                detail = reader.text()
            else:
                reader.finish()
        except TimeoutError:
            kind, detail = "timeout", f"no complete answer in {self._timeout_s:g}s"
        except HttpError as exc:
            kind, detail = ("stream" if exc.connected else "connect"), str(exc)
        except StreamError as exc:
            kind, detail = "stream", str(exc)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            kind, detail = "stream", f"malformed response: {type(exc).__name__}: {exc}"
        end = time.perf_counter()
        # Status and headers stay known when the body broke after them.
        value = response.headers.get(REPLICA_HEADER_BYTES)
        return reader.measure.record(
            request,
            run_start=run_start,
            closed_loop=closed_loop,
            end=end,
            status=response.status,
            replica=value.decode("latin-1") if value is not None else None,
            error_kind=kind,
            error=detail,
        )


class _BodyReader:
    """Turns body pieces into measurement events: SSE lines when streaming, else one body."""

    __slots__ = ("body", "measure", "rest", "stream")

    def __init__(self, measure: _Measure, *, stream: bool) -> None:
        self.measure = measure
        self.stream = stream
        self.rest = b""
        # The whole body when not streaming; otherwise what was not an event (an error document).
        self.body = bytearray()

    def feed(self, data: bytes, now: float) -> None:
        if not self.stream:
            self.body += data
            return
        if self.rest:
            data = self.rest + data
        lines = data.split(b"\n")
        self.rest = lines.pop()
        measure = self.measure
        for line in lines:
            if line.startswith(_DATA):
                measure.event(line[5:], now)
            elif line.strip() and not line.startswith(_SSE_FIELDS) and len(self.body) < 4096:
                self.body += line

    def text(self) -> str:
        """What the body said, for an error message."""
        return bytes(self.body + self.rest)[:300].decode("utf-8", "replace")

    def finish(self) -> None:
        if not self.stream:
            self.measure.whole(bytes(self.body))
        elif self.body:
            raise StreamError(f"not an event stream: {self.text()!r}")


class _Measure:
    """Timestamps of one response's token chunks and its usage figures.

    A token chunk is an event with a choice, as `vllm bench serve` counts them, except
    vLLM's opening role announcement (`delta: {role, content: ""}`), which carries no token
    (AIPerf leaves it out too). A chunk whose text is empty still carries a token (a partial
    UTF-8 character, a special token): it is timed, and noted as blank for the
    visible-text variants.
    """

    __slots__ = (
        "blank",
        "chunks",
        "count",
        "done",
        "ended",
        "first",
        "last",
        "output_tokens",
        "prompt_tokens",
        "sent",
    )

    def __init__(self, sent: float) -> None:
        self.sent = sent
        self.first: float | None = None
        self.last = 0.0
        self.chunks: list[float] = []
        self.count = 0
        # Positions (from 0) of the token chunks without visible text.
        self.blank: list[int] = []
        self.prompt_tokens: int | None = None
        self.output_tokens: int | None = None
        self.done = False
        # When the answer was complete ([DONE] or the whole body).
        self.ended: float | None = None

    def event(self, payload: bytes, now: float) -> None:
        if payload.strip() == _DONE:
            self.done = True
            self.ended = now
            return
        data = orjson.loads(payload)
        if "error" in data and not data.get("choices"):
            raise StreamError(f"error event in stream: {str(data['error'])[:200]}")
        for choice in data.get("choices") or ():
            delta = choice.get("delta")
            if delta is None:
                visible = bool(choice.get("text"))
            else:
                visible = bool(
                    delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning")
                )
                if not visible and delta.get("role") and not delta.get("tool_calls"):
                    break  # the role announcement: no token
            if self.first is None:
                self.first = now
            else:
                self.chunks.append(now - self.last)
            self.last = now
            if not visible:
                self.blank.append(self.count)
            self.count += 1
            break
        usage = data.get("usage")
        if usage:
            self.prompt_tokens = usage.get("prompt_tokens")
            self.output_tokens = usage.get("completion_tokens")

    def whole(self, body: bytes) -> None:
        now = time.perf_counter()
        data = orjson.loads(body)
        self.first = self.last = self.ended = now
        self.done = True
        usage = data.get("usage") or {}
        self.prompt_tokens = usage.get("prompt_tokens")
        self.output_tokens = usage.get("completion_tokens")

    def record(
        self,
        request: ScheduledRequest,
        *,
        run_start: float,
        closed_loop: bool,
        end: float,
        status: int,
        replica: str | None,
        error_kind: ErrorKind | None,
        error: str | None,
    ) -> RequestRecord:
        if error_kind is None and not self.done:
            error_kind, error = "stream", "stream ended without [DONE]"
        ok = error_kind is None
        # As the anchors: the answer ends with its last token chunk (not the usage chunk
        # or [DONE] after it); without any token chunk, when it was complete.
        if self.first is not None:
            end = self.last
        elif self.ended is not None:
            end = self.ended
        ttft = self.first - self.sent if ok and self.first is not None else None
        e2e = end - self.sent if ok else None
        output = self.output_tokens
        if output is None and ok:
            output = self.count
        tpot = None
        if ttft is not None and e2e is not None and output is not None and output > 1:
            tpot = (e2e - ttft) / (output - 1)
        sent_s = self.sent - run_start
        scheduled_s = sent_s if closed_loop else request.at_s
        return RequestRecord(
            index=request.index,
            model=request.model,
            scheduled_s=scheduled_s,
            sent_s=sent_s,
            lag_s=max(sent_s - scheduled_s, 0.0),
            status=status,
            error_kind=error_kind,
            error=error,
            ttft_s=ttft,
            itl_s=tuple(self.chunks) if ok else (),
            tpot_s=tpot,
            e2e_s=e2e,
            prompt_tokens=self.prompt_tokens,
            output_tokens=output if ok else self.output_tokens,
            replica=replica,
            requested_prompt_tokens=request.prompt_tokens,
            blank_chunks=tuple(self.blank) if ok else (),
        )
