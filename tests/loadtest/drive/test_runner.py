"""A target that is down, fails or breaks is reported per request, never crashes the run."""

import asyncio
from collections.abc import Callable

import pytest

from loadtest.analysis.summary import summarize
from loadtest.drive.progress import Snapshot
from loadtest.drive.runner import run_schedule
from loadtest.workload.schedule import build_schedule
from tests.loadtest.helpers import small_workload
from tests.procs import Proc, free_port


async def test_target_down_gives_connect_errors() -> None:
    workload = small_workload(requests=4)
    result = await run_schedule(f"http://127.0.0.1:{free_port()}", build_schedule(workload, seed=0))
    assert len(result.records) == 4
    assert {r.error_kind for r in result.records} == {"connect"}
    assert all(r.status == 0 and r.ttft_s is None and r.error for r in result.records)
    summary = summarize(result.records, workload)
    assert (summary.errors, summary.error_rate, summary.ok) == (4, 1.0, 0)
    assert summary.errors_by_kind == (("connect", 4),)
    assert summary.ttft.p50 is None


async def test_failures_halfway_are_recorded_by_kind(fake_openai: Callable[..., Proc]) -> None:
    """Every 3rd request gets a 500, every 4th stream is cut after two chunks."""
    server = fake_openai(ttft=0.01, gap=0.005, fail_every=3, break_every=4)
    workload = small_workload(requests=12)
    result = await run_schedule(server.url, build_schedule(workload, seed=0))
    kinds = [r.error_kind for r in result.records]
    assert kinds.count("http_5xx") == 4
    assert kinds.count("stream") == 2  # requests 4 and 8 (12 got the 500)
    failed = [r for r in result.records if r.error_kind == "http_5xx"]
    assert all(r.status == 500 and "injected failure" in (r.error or "") for r in failed)
    summary = summarize(result.records, workload)
    assert summary.errors == 6
    assert summary.ok == 6
    assert dict(summary.errors_by_kind) == {"http_5xx": 4, "stream": 2}
    assert summary.ttft.count == 6


async def test_every_request_has_a_timeout(fake_openai: Callable[..., Proc]) -> None:
    server = fake_openai(ttft=30.0)
    workload = small_workload(requests=2, timeout_s=0.5)
    result = await run_schedule(server.url, build_schedule(workload, seed=0))
    assert [r.error_kind for r in result.records] == ["timeout", "timeout"]
    assert result.duration_s < 5.0


async def test_progress_and_on_tick_see_the_run(fake_openai: Callable[..., Proc]) -> None:
    server = fake_openai(ttft=0.05, gap=0.01)
    seen: list[Snapshot] = []
    ticks: list[Snapshot] = []

    class Sink:
        closed = False

        def update(self, snapshot: Snapshot) -> None:
            seen.append(snapshot)

        def close(self) -> None:
            Sink.closed = True

    async def on_tick(snapshot: Snapshot) -> None:
        ticks.append(snapshot)

    workload = small_workload(requests=8)
    await run_schedule(
        server.url, build_schedule(workload, seed=0), progress=Sink(), on_tick=on_tick, tick_s=0.05
    )
    assert Sink.closed
    assert ticks and ticks[0].total == 8
    assert seen[-1].done == 8 and seen[-1].in_flight == 0 and seen[-1].errors == 0
    assert seen[-1].ttft_p50_s is not None and seen[-1].ttft_p50_s >= 0.05


async def test_a_failing_observer_does_not_stop_the_run(fake_openai: Callable[..., Proc]) -> None:
    server = fake_openai(ttft=0.05)
    calls = []

    def on_tick(snapshot: Snapshot) -> None:
        calls.append(snapshot)
        raise RuntimeError("observer broke")

    workload = small_workload(requests=6)
    schedule = build_schedule(workload, seed=0)
    result = await run_schedule(server.url, schedule, on_tick=on_tick, tick_s=0.05)
    assert calls
    assert len(result.records) == 6 and all(r.ok for r in result.records)


async def test_client_errors_and_error_events(fake_openai: Callable[..., Proc]) -> None:
    """A 429 is an http_4xx; an error event in the middle of a stream is a stream error."""
    server = fake_openai(ttft=0.01, gap=0.005, fail_every=3, fail_status=429, error_event_every=4)
    workload = small_workload(requests=8)
    result = await run_schedule(server.url, build_schedule(workload, seed=0))
    kinds = [r.error_kind for r in result.records]
    assert kinds == [None, None, "http_4xx", "stream", None, "http_4xx", None, "stream"]
    assert result.records[2].status == 429
    assert "engine failed" in (result.records[3].error or "")
    assert result.records[3].status == 200


async def test_api_key_is_sent_as_a_bearer_token(fake_openai: Callable[..., Proc]) -> None:
    server = fake_openai(api_key="s3cret")
    schedule = build_schedule(small_workload(requests=2), seed=0)
    allowed = await run_schedule(server.url, schedule, api_key="s3cret")
    assert all(r.ok for r in allowed.records)
    refused = await run_schedule(server.url, schedule)
    assert [(r.status, r.error_kind) for r in refused.records] == [(401, "http_4xx")] * 2
    assert "bad key" in (refused.records[0].error or "")


@pytest.mark.parametrize("concurrency", [None, 2])
async def test_stop_ends_the_run_early(
    fake_openai: Callable[..., Proc], concurrency: int | None
) -> None:
    server = fake_openai(ttft=0.1)
    workload = small_workload(requests=200)
    schedule = build_schedule(workload, seed=0, concurrency=concurrency)
    stop = asyncio.Event()

    def stop_after_a_few(snapshot: Snapshot) -> None:
        # Counted, not timed: start-up alone can take half a second on a busy machine.
        if snapshot.sent >= 3:
            stop.set()

    result = await run_schedule(
        server.url, schedule, stop=stop, on_tick=stop_after_a_few, tick_s=0.05
    )
    assert result.interrupted
    assert 3 <= len(result.records) < 50
    assert all(r.ok for r in result.records)
    assert result.duration_s < 2.0
