"""The runner against a scripted in-process server: retries, Retry-After, deadlines, stops."""

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from loadtest.batch.retry import RetryPolicy
from loadtest.batch.runner import BatchOptions, BatchRunner, Session
from loadtest.batch.tasks import Task
from loadtest.batch.writer import ResultWriter
from tests.procs import free_port

FAST = RetryPolicy(max_attempts=3, backoff_base_s=0.01, backoff_max_s=0.02, deadline_s=30.0)


class Script:
    """Answers by the request's prompt; keeps the time of every attempt per prompt."""

    def __init__(self) -> None:
        self.attempts: dict[str, list[float]] = defaultdict(list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        prompt = body["prompt"]
        self.attempts[prompt].append(time.perf_counter())
        n = len(self.attempts[prompt])
        kind = prompt.split(":")[0]
        ok = {"choices": [{"text": prompt}], "usage": {"prompt_tokens": 2, "completion_tokens": 3}}
        if kind == "429-once" and n == 1:
            return web.json_response(
                {"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "0.3"}
            )
        if kind == "500":
            return web.json_response({"error": {"message": "boom"}}, status=500)
        if kind == "400":
            return web.json_response({"error": {"message": "bad request"}}, status=400)
        if kind == "hang":
            await asyncio.sleep(30)
        if kind == "drop-once" and n == 1:
            assert request.transport is not None
            request.transport.close()
            await asyncio.sleep(1)
        if kind == "not-json-once" and n == 1:
            return web.Response(text="<html>oops</html>", status=200)
        if kind == "slow":
            await asyncio.sleep(0.3)
        return web.json_response(ok, headers={"x-request-id": f"req-{prompt}"})


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, Script]]:
    script = Script()
    app = web.Application()
    app.router.add_post("/v1/completions", script.handle)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", script
    await runner.cleanup()


def tasks(*prompts: str) -> list[Task]:
    return [
        Task(i + 1, f"id-{i}", "/v1/completions", orjson.dumps({"model": "m", "prompt": p}))
        for i, p in enumerate(prompts)
    ]


async def run(
    target: str, out: Path, todo: list[Task], stop: asyncio.Event | None = None, **options: object
) -> tuple[Session, dict[str, dict[str, object]]]:
    writer = ResultWriter(out)
    settings = {"concurrency": 4, "retry": FAST, "seed": 1, **options}
    runner = BatchRunner(
        iter(todo),
        writer,
        BatchOptions(target, **settings),
        total=len(todo),
        stop=stop,  # type: ignore[arg-type]
    )
    session = await runner.run()
    writer.close()
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]  # noqa: ASYNC240
    assert len(lines) == len({line["custom_id"] for line in lines})
    return session, {line["custom_id"]: line for line in lines}


async def test_every_request_gets_its_answer_line(
    server: tuple[str, Script], tmp_path: Path
) -> None:
    url, _ = server
    session, lines = await run(url, tmp_path / "o.jsonl", tasks(*(f"ok:{i}" for i in range(30))))
    assert len(lines) == 30 and session.stop_reason is None
    line = lines["id-7"]
    assert line["response"]["status_code"] == 200 and line["error"] is None
    assert line["response"]["request_id"] == "req-ok:7"
    assert line["response"]["body"]["choices"][0]["text"] == "ok:7"
    assert (
        session.counters.ok,
        session.counters.prompt_tokens,
        session.counters.completion_tokens,
    ) == (30, 60, 90)


async def test_retry_after_is_waited_for(server: tuple[str, Script], tmp_path: Path) -> None:
    url, script = server
    session, lines = await run(url, tmp_path / "o.jsonl", tasks("429-once:a"))
    first, second = script.attempts["429-once:a"]
    assert second - first >= 0.3
    assert lines["id-0"]["response"]["status_code"] == 200
    assert session.counters.retries == 1


async def test_a_request_failing_every_attempt_keeps_its_last_answer(
    server: tuple[str, Script], tmp_path: Path
) -> None:
    url, script = server
    session, lines = await run(url, tmp_path / "o.jsonl", tasks("500:x", "ok:y"))
    assert len(script.attempts["500:x"]) == FAST.max_attempts
    assert lines["id-0"]["response"] == {
        "status_code": 500,
        "request_id": "",
        "body": {"error": {"message": "boom"}},
    }
    assert (session.counters.failed, session.counters.retries, session.counters.ok) == (1, 2, 1)


async def test_a_client_error_is_final_at_once(server: tuple[str, Script], tmp_path: Path) -> None:
    url, script = server
    _, lines = await run(url, tmp_path / "o.jsonl", tasks("400:x"))
    assert len(script.attempts["400:x"]) == 1
    assert lines["id-0"]["response"]["status_code"] == 400


async def test_broken_connections_and_non_json_answers_are_sent_again(
    server: tuple[str, Script], tmp_path: Path
) -> None:
    url, script = server
    _, lines = await run(url, tmp_path / "o.jsonl", tasks("drop-once:a", "not-json-once:b"))
    assert [len(script.attempts[p]) for p in ("drop-once:a", "not-json-once:b")] == [2, 2]
    assert {line["response"]["status_code"] for line in lines.values()} == {200}


async def test_the_deadline_ends_a_request_that_never_answers(
    server: tuple[str, Script], tmp_path: Path
) -> None:
    url, _ = server
    policy = RetryPolicy(max_attempts=5, attempt_timeout_s=60.0, deadline_s=0.3)
    started = time.perf_counter()
    session, lines = await run(url, tmp_path / "o.jsonl", tasks("hang:x"), retry=policy)
    assert time.perf_counter() - started < 10.0
    assert lines["id-0"]["response"] is None
    assert lines["id-0"]["error"]["code"] == "deadline_exceeded"
    assert session.counters.failed == 1


async def test_an_unreachable_target_fails_requests_then_stops_the_run(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    session, lines = await run(
        url,
        tmp_path / "o.jsonl",
        tasks(*(f"ok:{i}" for i in range(50))),
        concurrency=1,
        stop_after_failures=5,
    )
    assert session.stop_reason == "failures"
    assert session.error is not None and "connection_error: cannot connect" in session.error
    assert len(lines) == 5
    assert {line["error"]["code"] for line in lines.values()} == {"connection_error"}
    assert session.counters.left == 0  # the 45 not started are simply not done


async def test_a_stop_lets_requests_in_flight_finish_and_sends_nothing_more(
    server: tuple[str, Script], tmp_path: Path
) -> None:
    url, script = server
    stop = asyncio.Event()

    async def stop_soon() -> None:
        for _ in range(100):  # bounded: 1 s
            if len(script.attempts) >= 4:
                break
            await asyncio.sleep(0.01)
        stop.set()

    stopper = asyncio.create_task(stop_soon())
    session, lines = await run(
        url, tmp_path / "o.jsonl", tasks(*(f"slow:{i}" for i in range(20))), stop=stop
    )
    await stopper
    assert session.stop_reason == "interrupted"
    assert len(script.attempts) == 4 and len(lines) == 4  # those in flight were kept
    assert all(line["response"]["status_code"] == 200 for line in lines.values())


async def test_rate_spaces_the_sends(server: tuple[str, Script], tmp_path: Path) -> None:
    url, script = server
    await run(url, tmp_path / "o.jsonl", tasks(*(f"ok:{i}" for i in range(20))), rate=40.0)
    times = sorted(t for attempts in script.attempts.values() for t in attempts)
    assert times[-1] - times[0] >= 19 / 40 * 0.9
