"""Sends a batch's tasks: C requests in flight (and at most R per second), retries with backoff,
a deadline per request, and each final outcome written as one output line the moment it is
known. Only final outcomes are written: a request stopped between attempts (Ctrl-C, a crash)
has no line, so --resume sends it again.

The HTTP client is the load generator's (loadtest/drive/http.py), chosen by measurement for
its CPU per request; bench/batch_bench.py shows this loop holds 5,000 req/s with it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import orjson

from loadtest.batch.lines import LineIds, answer_line, error_line, usage
from loadtest.batch.progress import BatchProgressSink, BatchSnapshot
from loadtest.batch.queue import Job, JobQueue, Pacer
from loadtest.batch.retry import RetryPolicy, parse_retry_after
from loadtest.batch.tasks import ENDPOINTS, Task
from loadtest.batch.writer import ResultWriter
from loadtest.drive.http import ConnectionPool, HttpError

_REQUEST_ID = b"x-request-id"
_RETRY_AFTER = b"retry-after"


@dataclass(frozen=True)
class BatchOptions:
    target: str
    concurrency: int = 64
    rate: float | None = None  # attempts per second, retries included
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    api_key: str | None = None
    # Stop (resumably) after this many requests in a row failed for good; 0: never.
    stop_after_failures: int = 100
    seed: int | None = None  # of the backoff jitter


class Counters:
    """What this run did so far (mutable, read by progress and the summary)."""

    __slots__ = (
        "attempts",
        "completion_tokens",
        "consecutive_failures",
        "failed",
        "left",
        "ok",
        "prompt_tokens",
        "retries",
    )

    def __init__(self) -> None:
        self.ok = self.failed = self.retries = self.attempts = 0
        self.prompt_tokens = self.completion_tokens = 0
        self.left = self.consecutive_failures = 0


@dataclass(frozen=True)
class Session:
    """How a run ended."""

    counters: Counters
    duration_s: float
    # None: every task was sent to its end; else "interrupted", "failures", "error" (or
    # "abandoned", set by the command on a second Ctrl-C).
    stop_reason: str | None
    error: str | None = None  # what stopped it ("error"), or the last failure ("failures")


class Answer(NamedTuple):
    status: int
    body: bytes
    parsed: Any  # the body as JSON; None when it is not JSON
    request_id: str
    retry_after_s: float | None


class Failure(NamedTuple):
    code: str  # connection_error, timeout, deadline_exceeded, invalid_response
    message: str


def endpoint_paths(target: str) -> dict[str, bytes]:
    """Request path per batch url, under the target's own path prefix (a trailing /v1 is the
    API's own)."""
    parts = urlsplit(target)
    prefix = parts.path.rstrip("/").removesuffix("/v1")
    return {url: (prefix + url).encode() for url in ENDPOINTS}


class BatchRunner:
    """One run over the tasks still to do; `run()` once."""

    def __init__(
        self,
        tasks: Iterator[Task],
        writer: ResultWriter,
        options: BatchOptions,
        *,
        total: int,
        done_before: int = 0,
        failed_before: int = 0,
        progress: BatchProgressSink | None = None,
        stop: asyncio.Event | None = None,
        tick_s: float = 0.5,
    ) -> None:
        self.options = options
        self.policy = options.retry
        self.writer = writer
        self.counters = Counters()
        self.queue = JobQueue(tasks, self.policy.deadline_s, max_waiting=options.concurrency)
        self.pacer = Pacer(options.rate) if options.rate else None
        self.total = total
        self.done_before = done_before
        self.failed_before = failed_before
        self.progress = progress
        self.stop_event = stop or asyncio.Event()
        self.tick_s = tick_s
        self.rng = random.Random(options.seed)
        self.ids = LineIds()
        self.paths = endpoint_paths(options.target)
        headers = b"content-type: application/json\r\n"
        if options.api_key:
            headers += b"authorization: Bearer %s\r\n" % options.api_key.encode()
        self.headers = headers
        self.pool = ConnectionPool(options.target)
        self.stop_reason: str | None = None
        self.error: str | None = None
        self.aborted = asyncio.Event()
        self.duration_s = 0.0
        self.history: deque[tuple[float, int, int]] = deque()

    async def run(self) -> Session:
        start = time.perf_counter()
        workers = [asyncio.create_task(self._worker()) for _ in range(self.options.concurrency)]
        helpers = [
            asyncio.create_task(self._watch_stop()),
            asyncio.create_task(self._tick(start)),
            asyncio.create_task(self.writer.sync_every_interval()),
        ]
        everyone = asyncio.gather(*workers)
        aborted = asyncio.ensure_future(self.aborted.wait())
        either: set[asyncio.Future[Any]] = {everyone, aborted}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if everyone.done():
                everyone.result()  # a worker's unexpected error surfaces here
        finally:
            for task in [*workers, *helpers, aborted]:
                task.cancel()
            await asyncio.gather(everyone, *helpers, aborted, return_exceptions=True)
            self.pool.close()
            # Jobs dropped by a stop, and those cut short: --resume sends them.
            self.counters.left = self.queue.left + self.queue.in_flight
            self.duration_s = time.perf_counter() - start
            if self.progress is not None:
                self.progress.update(self.snapshot(self.duration_s, whole_run=True))
                self.progress.close()
        return Session(self.counters, self.duration_s, self.stop_reason, self.error)

    def halt(self, reason: str) -> None:
        """Drain: no new sends; requests in flight end (their answers are kept)."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self.queue.stop()
        if self.pacer is not None:
            self.pacer.wake_all()

    async def _watch_stop(self) -> None:
        await self.stop_event.wait()
        self.halt("interrupted")

    async def _worker(self) -> None:
        queue = self.queue
        while True:
            try:
                job = await queue.take()
            except Exception as exc:  # the input could not be read
                self._abort(str(exc))
                return
            if job is None:
                return
            if self.pacer is not None:
                await self.pacer.wait()
                if queue.stopping:
                    queue.drop()
                    continue
            outcome = await self._attempt(job)
            try:
                self._settle(job, outcome)
            except OSError as exc:  # the output cannot be written (a full disk)
                self._abort(f"cannot write {self.writer.path}: {exc}")
                return

    def _abort(self, message: str) -> None:
        self.error = message
        self.stop_reason = "error"
        self.queue.stop()
        self.aborted.set()

    async def _attempt(self, job: Job) -> Answer | Failure:
        self.counters.attempts += 1
        left = job.deadline - time.perf_counter()
        if left <= 0:
            return _past_deadline(self.policy)
        timeout = min(self.policy.attempt_timeout_s, left)
        task = job.task
        body = bytearray()
        try:
            async with asyncio.timeout(timeout):
                response = await self.pool.request(
                    b"POST",
                    self.paths[task.url],
                    self.headers,
                    task.body,
                    lambda data, _now: body.extend(data),
                )
        except TimeoutError:
            if timeout < self.policy.attempt_timeout_s:
                return _past_deadline(self.policy)
            return Failure("timeout", f"no complete answer in {timeout:g}s")
        except HttpError as exc:
            return Failure("connection_error", str(exc))
        raw = bytes(body)
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = None
        request_id = response.headers.get(_REQUEST_ID)
        if request_id is not None:
            rid = request_id.decode("latin-1")
        elif isinstance(parsed, dict) and isinstance(parsed.get("id"), str):
            rid = parsed["id"]
        else:
            rid = ""
        retry_after = parse_retry_after(response.headers.get(_RETRY_AFTER))
        return Answer(response.status, raw, parsed, rid, retry_after)

    def _settle(self, job: Job, outcome: Answer | Failure) -> None:
        counters, queue = self.counters, self.queue
        if (
            isinstance(outcome, Answer)
            and outcome.status == 200
            and isinstance(outcome.parsed, dict)
        ):
            line = answer_line(
                self.ids.next(),
                job.task.custom_id,
                200,
                outcome.request_id,
                outcome.body,
                outcome.parsed,
            )
            self.writer.write(line)
            prompt, completion = usage(outcome.parsed)
            counters.ok += 1
            counters.prompt_tokens += prompt
            counters.completion_tokens += completion
            counters.consecutive_failures = 0
            queue.finished()
            return
        if isinstance(outcome, Answer) and outcome.status == 200:
            outcome = Failure(
                "invalid_response", f"a 200 whose body is not a JSON object: {outcome.body[:200]!r}"
            )
        if self._retryable(outcome):
            if queue.stopping:
                queue.drop()
                return
            attempts = job.attempts + 1
            if attempts < self.policy.max_attempts:
                retry_after = outcome.retry_after_s if isinstance(outcome, Answer) else None
                due = time.perf_counter() + self.policy.delay(attempts, retry_after, self.rng)
                if due < job.deadline:
                    counters.retries += 1
                    queue.again(Job(job.task, attempts, job.deadline), due)
                    return
        self._write_failure(job, outcome)

    def _retryable(self, outcome: Answer | Failure) -> bool:
        if isinstance(outcome, Answer):
            return self.policy.retryable_status(outcome.status)
        return outcome.code != "deadline_exceeded"

    def _write_failure(self, job: Job, outcome: Answer | Failure) -> None:
        line_id, custom_id = self.ids.next(), job.task.custom_id
        if isinstance(outcome, Answer):
            line = answer_line(
                line_id, custom_id, outcome.status, outcome.request_id, outcome.body, outcome.parsed
            )
        else:
            line = error_line(line_id, custom_id, outcome.code, outcome.message)
        self.writer.write(line)
        counters = self.counters
        counters.failed += 1
        counters.consecutive_failures += 1
        self.queue.finished()
        limit = self.options.stop_after_failures
        if limit and counters.consecutive_failures >= limit:
            self.error = f"the last was {_describe(outcome)}"
            self.halt("failures")

    def snapshot(self, elapsed: float, *, whole_run: bool = False) -> BatchSnapshot:
        """The job now; rates over the last ~10 s, or over the whole run."""
        counters = self.counters
        now = time.perf_counter()
        finished = counters.ok + counters.failed
        self.history.append((now, finished, counters.completion_tokens))
        while len(self.history) > 2 and now - self.history[1][0] >= 10.0:
            self.history.popleft()
        then, finished_then, tokens_then = self.history[0]
        if whole_run:
            then, finished_then, tokens_then = now - elapsed, 0, 0
        span = now - then
        return BatchSnapshot(
            elapsed_s=elapsed,
            total=self.total,
            done=self.done_before + finished,
            failed=self.failed_before + counters.failed,
            in_flight=self.queue.in_flight,
            waiting=len(self.queue.heap),
            retries=counters.retries,
            rate=(finished - finished_then) / span if span > 0 else 0.0,
            output_tokens_per_s=(counters.completion_tokens - tokens_then) / span
            if span > 0
            else 0.0,
        )

    async def _tick(self, start: float) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            snapshot = self.snapshot(time.perf_counter() - start)
            if self.progress is not None:
                self.progress.update(snapshot)


def _describe(outcome: Answer | Failure) -> str:
    """One failure, for a person: HTTP 404: The model `x` does not exist."""
    if isinstance(outcome, Failure):
        return f"{outcome.code}: {outcome.message}"
    parsed = outcome.parsed
    error = parsed.get("error") if isinstance(parsed, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    text = message if isinstance(message, str) else outcome.body[:200].decode("utf-8", "replace")
    return f"HTTP {outcome.status}: {text}"


def _past_deadline(policy: RetryPolicy) -> Failure:
    return Failure("deadline_exceeded", f"no answer within the {policy.deadline_s:g}s deadline")
