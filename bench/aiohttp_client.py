"""The load generator's client written with aiohttp, kept only to compare against the lean
client in loadtest/drive/http.py (bench/loadtest_bench.py --compare-clients)."""

from __future__ import annotations

import time
from collections.abc import Coroutine
from typing import Any

import aiohttp

from loadtest.drive.client import REPLICA_HEADER, StreamError, _Measure, endpoint_url, request_body
from loadtest.drive.records import ErrorKind, RequestRecord
from loadtest.workload.schedule import Schedule, ScheduledRequest


class AiohttpClient:
    def __init__(self, target_url: str, schedule: Schedule, *, api_key: str | None = None) -> None:
        self._schedule = schedule
        self._url = endpoint_url(target_url, schedule.workload.api)
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = aiohttp.ClientTimeout(total=schedule.workload.timeout_s, sock_connect=10)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AiohttpClient:
        connector = aiohttp.TCPConnector(limit=0)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    def call_after_reads(self, hook: object) -> None:
        """aiohttp has no such hook: due requests wait for the dispatcher's turn."""

    def start(
        self, request: ScheduledRequest, *, run_start: float, closed_loop: bool = False
    ) -> Coroutine[Any, Any, RequestRecord]:
        # aiohttp cannot write before the task runs: the send waits for a task switch.
        return self.send(request, run_start=run_start, closed_loop=closed_loop)

    async def send(
        self, request: ScheduledRequest, *, run_start: float, closed_loop: bool = False
    ) -> RequestRecord:
        assert self._session is not None
        body = request_body(self._schedule, request)
        sent = time.perf_counter()
        measure = _Measure(sent)
        status, replica = 0, None
        kind: ErrorKind | None = None
        detail: str | None = None
        try:
            async with self._session.post(self._url, data=body, headers=self._headers) as resp:
                status = resp.status
                replica = resp.headers.get(REPLICA_HEADER)
                if status >= 400:
                    kind = "http_5xx" if status >= 500 else "http_4xx"
                    detail = (await resp.text())[:300]
                else:
                    async for line in resp.content:
                        if line.startswith(b"data:"):
                            measure.event(line[5:], time.perf_counter())
                        if measure.done:
                            break
        except TimeoutError:
            kind, detail = "timeout", "timeout"
        except (aiohttp.ClientError, StreamError, ValueError) as exc:
            kind, detail = "stream", repr(exc)
        return measure.record(
            request,
            run_start=run_start,
            closed_loop=closed_loop,
            end=time.perf_counter(),
            status=status,
            replica=replica,
            error_kind=kind,
            error=detail,
        )
