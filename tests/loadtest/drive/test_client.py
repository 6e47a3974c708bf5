"""Measurements equal the known timings of synthetic streams."""

import statistics
from collections.abc import Callable

import orjson
import pytest

from loadtest.drive.client import _Measure, endpoint_url, request_body
from loadtest.drive.records import RequestRecord
from loadtest.drive.runner import run_schedule
from loadtest.workload import Arrival, LengthDist
from loadtest.workload.schedule import ScheduledRequest, build_schedule
from tests.loadtest.helpers import small_workload
from tests.procs import Proc


def chunk(text: str) -> bytes:
    return orjson.dumps({"choices": [{"index": 0, "delta": {"content": text}}]})


REQUEST = ScheduledRequest(
    index=3, at_s=1.0, model="m", prompt_tokens=8, max_tokens=4, prefix_group=-1, text_offset=0
)


def test_measurement_of_a_timed_stream_is_exact() -> None:
    measure = _Measure(sent=10.0)
    role_only = orjson.dumps({"choices": [{"delta": {"role": "assistant", "content": ""}}]})
    measure.event(role_only, 10.05)  # no content: not the first token
    for at in (10.2, 10.25, 10.35, 10.4):
        measure.event(chunk("x"), at)
    usage = {"prompt_tokens": 8, "completion_tokens": 4}
    measure.event(orjson.dumps({"choices": [], "usage": usage}), 10.41)
    measure.event(b" [DONE]", 10.5)  # the end of the answer
    record = measure.record(
        REQUEST,
        run_start=8.5,
        closed_loop=False,
        end=10.6,
        status=200,
        replica="r0",
        error_kind=None,
        error=None,
    )
    assert record.ok
    assert record.sent_s == pytest.approx(1.5)
    assert record.lag_s == pytest.approx(0.5)
    assert record.ttft_s == pytest.approx(0.2)
    assert record.itl_s == pytest.approx((0.05, 0.1, 0.05))
    # As vllm bench serve and AIPerf: the answer ends with its last token chunk, not [DONE].
    assert record.e2e_s == pytest.approx(0.4)
    assert record.tpot_s == pytest.approx((0.4 - 0.2) / 3)
    assert (record.prompt_tokens, record.output_tokens, record.replica) == (8, 4, "r0")
    assert record.requested_prompt_tokens == REQUEST.prompt_tokens
    assert record.blank_chunks == ()
    assert record.visible() == (record.ttft_s, record.itl_s)


def test_blank_token_chunks_are_timed_and_left_out_of_the_visible_variant() -> None:
    """A token that decodes to no text yet (half of a multi-byte character) still ends one
    gap and starts the next, as `vllm bench serve` counts it; the visible-text variant
    joins those two gaps."""
    measure = _Measure(sent=0.0)
    measure.event(orjson.dumps({"choices": [{"delta": {"role": "assistant", "content": ""}}]}), 0.1)
    for at, text in ((0.1, ""), (0.2, "\u00e9"), (0.3, ""), (0.35, ""), (0.5, "x")):
        measure.event(chunk(text), at)
    measure.event(orjson.dumps({"choices": [], "usage": {"completion_tokens": 5}}), 0.5)
    measure.event(b"[DONE]", 0.6)
    record = measure.record(
        REQUEST,
        run_start=0.0,
        closed_loop=True,
        end=0.6,
        status=200,
        replica=None,
        error_kind=None,
        error=None,
    )
    assert record.ttft_s == pytest.approx(0.1)  # the first token chunk, though blank
    assert record.itl_s == pytest.approx((0.1, 0.1, 0.05, 0.15))
    assert record.blank_chunks == (0, 2, 3)
    assert record.e2e_s == pytest.approx(0.5)
    assert record.tpot_s == pytest.approx(0.4 / 4)
    ttft_visible, gaps_visible = record.visible()
    assert ttft_visible == pytest.approx(0.2)
    assert gaps_visible == pytest.approx((0.3,))
    assert RequestRecord.from_dict(record.to_dict()) == record


def test_stream_without_done_is_an_error() -> None:
    measure = _Measure(sent=0.0)
    measure.event(chunk("x"), 0.1)
    record = measure.record(
        REQUEST,
        run_start=0.0,
        closed_loop=True,
        end=0.2,
        status=200,
        replica=None,
        error_kind=None,
        error=None,
    )
    assert record.error_kind == "stream"
    assert record.lag_s == 0.0  # closed loop: scheduled when sent


def test_request_body_asks_for_usage_and_ignores_eos() -> None:
    schedule = build_schedule(small_workload(), seed=0)
    body = orjson.loads(request_body(schedule, schedule.requests[0]))
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["ignore_eos"] is True
    assert body["max_tokens"] == 10
    assert body["messages"][0]["content"] == schedule.prompt(schedule.requests[0])
    assert endpoint_url("http://h:1/", "chat") == "http://h:1/v1/chat/completions"
    assert endpoint_url("http://h:1/v1", "completions") == "http://h:1/v1/completions"


async def test_streamed_timings_match_the_server(fake_openai: Callable[..., Proc]) -> None:
    server = fake_openai(ttft=0.1, gap=0.02, replica="replica-7")
    schedule = build_schedule(small_workload(), seed=1)
    result = await run_schedule(server.url, schedule)
    assert [r.index for r in result.records] == list(range(6))
    for record, request in zip(result.records, schedule.requests, strict=True):
        assert record.ok, record.error
        assert record.status == 200
        assert record.replica == "replica-7"
        assert record.model == request.model
        assert record.prompt_tokens == request.prompt_tokens == 40
        assert record.output_tokens == 10
        assert len(record.itl_s) == 9
        assert 0.1 <= record.ttft_s <= 0.16  # type: ignore[operator]
        assert 0.019 <= statistics.median(record.itl_s) <= 0.03
        assert 0.019 <= record.tpot_s <= 0.03  # type: ignore[operator]
        assert 0.28 <= record.e2e_s <= 0.4  # type: ignore[operator]
        assert record.scheduled_s == request.at_s
        # A send due within 0.2 ms goes out at once rather than after a sleep (runner._SPIN_S).
        assert record.sent_s >= record.scheduled_s - 0.0002


@pytest.mark.parametrize("api", ["chat", "completions"])
async def test_non_streaming_and_completions(fake_openai: Callable[..., Proc], api: str) -> None:
    server = fake_openai(ttft=0.05, gap=0.01)
    workload = small_workload(stream=False, api=api, requests=2)
    result = await run_schedule(server.url, build_schedule(workload, seed=0))
    for record in result.records:
        assert record.ok, record.error
        assert record.output_tokens == 10
        assert record.ttft_s == pytest.approx(record.e2e_s)
        assert 0.14 <= record.e2e_s <= 0.25  # type: ignore[operator]
        assert record.itl_s == ()


async def test_completions_stream(fake_openai: Callable[..., Proc]) -> None:
    server = fake_openai(ttft=0.05, gap=0.01)
    workload = small_workload(api="completions", requests=2)
    result = await run_schedule(server.url, build_schedule(workload, seed=0))
    assert all(r.ok and r.output_tokens == 10 and len(r.itl_s) == 9 for r in result.records)


async def test_requests_leave_on_schedule_whatever_the_server_does(
    fake_openai: Callable[..., Proc],
) -> None:
    """Open loop: a slow server (1 s to first token) does not delay later sends."""
    server = fake_openai(ttft=1.0, gap=0.0)
    workload = small_workload(arrival=Arrival("constant", rate=20.0), requests=10)
    result = await run_schedule(server.url, build_schedule(workload, seed=0))
    assert all(r.ok for r in result.records)
    sent = [r.sent_s for r in result.records]
    assert sent[-1] < 0.45 + 0.05  # the 10th leaves at 0.45 s, long before the first answer
    assert all(r.lag_s < 0.05 for r in result.records)
    assert result.lag.max_s < 0.05
    assert result.duration_s >= 1.45


async def test_closed_loop_keeps_the_concurrency(fake_openai: Callable[..., Proc]) -> None:
    server = fake_openai(ttft=0.1, gap=0.0)
    workload = small_workload(output_tokens=LengthDist("fixed", value=1))
    schedule = build_schedule(workload, seed=0, concurrency=2, requests=6)
    result = await run_schedule(server.url, schedule)
    assert result.closed_loop
    assert all(r.ok and r.lag_s == 0.0 for r in result.records)
    sent = sorted(r.sent_s for r in result.records)
    # Two at a time: the 3rd and 4th wait for the 1st pair, the 5th and 6th for the 2nd.
    assert sent[1] < 0.05
    assert 0.1 <= sent[2] < 0.2
    assert 0.2 <= sent[4] < 0.35


async def test_malformed_stream_is_a_stream_error(fake_openai: Callable[..., Proc]) -> None:
    """A server that streams something that is not JSON: the record says why."""
    server = fake_openai(garbage_every=2)
    result = await run_schedule(server.url, build_schedule(small_workload(requests=4), seed=0))
    assert [r.error_kind for r in result.records] == [None, "stream", None, "stream"]
    assert "JSONDecodeError" in (result.records[1].error or "")


async def test_connections_are_kept_alive_and_reused(fake_openai: Callable[..., Proc]) -> None:
    from loadtest.drive.client import Client

    server = fake_openai(ttft=0.01, gap=0.001)
    schedule = build_schedule(small_workload(requests=4), seed=0)
    async with Client(server.url, schedule) as client:
        for request in schedule.requests:
            record = await client.send(request, run_start=0.0)
            assert record.ok, record.error
            # One request at a time: the same single connection serves them all.
            assert len(client._pool.idle) == 1
        first = client._pool.idle[0]
        await client.send(schedule.requests[0], run_start=0.0)
        assert client._pool.idle == [first]
