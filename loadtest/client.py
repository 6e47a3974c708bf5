"""Send one scheduled request to an OpenAI-compatible endpoint and measure it.

aiohttp, because at the generator's targets (thousands of requests and tens of thousands of
streamed chunks per second in one process) the client's per-request and per-chunk CPU decides
how late requests leave; bench/loadtest_bench.py measures it.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import orjson

from loadtest.records import ErrorKind, RequestRecord
from loadtest.schedule import Schedule, ScheduledRequest

REPLICA_HEADER = "x-switchyard-replica"
_DATA = b"data:"
_DONE = b"[DONE]"


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
        self._url = endpoint_url(target_url, schedule.workload.api)
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = aiohttp.ClientTimeout(
            total=schedule.workload.timeout_s, sock_connect=connect_timeout_s
        )
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        # No connection limit: an open-loop generator must never queue requests on its own side.
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self._timeout, auto_decompress=False
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(
        self, request: ScheduledRequest, *, run_start: float, closed_loop: bool = False
    ) -> RequestRecord:
        """Send `request` now; never raises for what the target does (returns an error record).

        Closed loop: the request counts as scheduled when it is sent (no lag).
        """
        assert self._session is not None, "use Client as an async context manager"
        body = request_body(self._schedule, request)
        sent = time.perf_counter()
        measure = _Measure(sent)
        status = 0
        replica: str | None = None
        kind: ErrorKind | None = None
        detail: str | None = None
        got_headers = False
        try:
            async with self._session.post(self._url, data=body, headers=self._headers) as resp:
                got_headers = True
                status = resp.status
                replica = resp.headers.get(REPLICA_HEADER)
                if status >= 400:
                    kind = "http_5xx" if status >= 500 else "http_4xx"
                    detail = (await resp.text(errors="replace"))[:300]
                elif self._schedule.workload.stream:
                    await _read_stream(resp, measure)
                else:
                    measure.whole(await resp.read())
        except TimeoutError:
            kind, detail = "timeout", f"no complete answer in {self._timeout.total:g}s"
        except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError) as exc:
            kind = "stream" if got_headers else "connect"
            detail = str(exc) or type(exc).__name__
        except (aiohttp.ClientPayloadError, aiohttp.ClientResponseError, StreamError) as exc:
            kind, detail = "stream", str(exc) or type(exc).__name__
        except aiohttp.ClientError as exc:
            kind = "stream" if got_headers else "connect"
            detail = f"{type(exc).__name__}: {exc}"
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            kind, detail = "stream", f"malformed response: {type(exc).__name__}: {exc}"
        end = time.perf_counter()
        return measure.record(
            request,
            run_start=run_start,
            closed_loop=closed_loop,
            end=end,
            status=status,
            replica=replica,
            error_kind=kind,
            error=detail,
        )


class _Measure:
    """Timestamps of one response's chunks and its usage figures."""

    __slots__ = ("chunks", "done", "first", "last", "output_tokens", "prompt_tokens", "sent")

    def __init__(self, sent: float) -> None:
        self.sent = sent
        self.first: float | None = None
        self.last = 0.0
        self.chunks: list[float] = []
        self.prompt_tokens: int | None = None
        self.output_tokens: int | None = None
        self.done = False

    def event(self, payload: bytes, now: float) -> None:
        if payload.strip() == _DONE:
            self.done = True
            return
        data = orjson.loads(payload)
        if "error" in data and not data.get("choices"):
            raise StreamError(f"error event in stream: {str(data['error'])[:200]}")
        for choice in data.get("choices") or ():
            delta = choice.get("delta")
            text = delta.get("content") if delta is not None else choice.get("text")
            if text:
                if self.first is None:
                    self.first = now
                else:
                    self.chunks.append(now - self.last)
                self.last = now
                break
        usage = data.get("usage")
        if usage:
            self.prompt_tokens = usage.get("prompt_tokens")
            self.output_tokens = usage.get("completion_tokens")

    def whole(self, body: bytes) -> None:
        now = time.perf_counter()
        data = orjson.loads(body)
        self.first = self.last = now
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
        ttft = self.first - self.sent if ok and self.first is not None else None
        e2e = end - self.sent if ok else None
        output = self.output_tokens
        if output is None and ok:
            output = len(self.chunks) + (1 if self.first is not None else 0)
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
        )


async def _read_stream(resp: aiohttp.ClientResponse, measure: _Measure) -> None:
    """Server-sent events: one `data:` line per event; stamp each as it arrives."""
    clock = time.perf_counter
    async for line in resp.content:
        if line.startswith(_DATA):
            measure.event(line[5:], clock())
        elif line.strip() and not line.startswith(b":"):
            raise StreamError(f"unexpected line in stream: {line[:100]!r}")
        if measure.done:
            return
