"""The per-request line written without structlog: the same JSON object structlog writes,
one write per turn of the event loop, nothing at levels above info."""

import asyncio
import io
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from gateway.access_log import AccessLog
from turnout.logs import configure_logging, get_logger

FIELDS: dict[str, Any] = {
    "request_id": "r-1",
    "key": None,
    "model": "m1",
    "replica": "r0",
    "status": 200,
    "ttfb": 0.000123,
    "failed_attempts": ["r1: http_503 after 0.01 s"],
}


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture
def json_logging() -> Iterator[None]:
    configure_logging("info", json=True)
    yield
    structlog.reset_defaults()


def _structlog_line(fields: dict[str, Any]) -> dict[str, Any]:
    stream = io.StringIO()
    log = structlog.wrap_logger(
        structlog.PrintLogger(stream),
        processors=structlog.get_config()["processors"],
    ).bind(logger="gateway.proxy")
    log.info("request_finished", **fields)
    parsed: dict[str, Any] = json.loads(stream.getvalue())
    return parsed


def test_the_line_is_the_object_structlog_writes(json_logging: None) -> None:
    stream = CountingStream()
    structlog.contextvars.bind_contextvars(worker=4321)  # as a worker binds its pid
    try:
        access = AccessLog(get_logger("gateway.proxy"), "gateway.proxy", stream, enabled=True)
        access.info("request_finished", **FIELDS)  # no event loop: written at once
        theirs = _structlog_line(FIELDS)
    finally:
        structlog.contextvars.clear_contextvars()
    ours = json.loads(stream.getvalue())
    assert ours["worker"] == 4321
    assert list(ours) == list(theirs)
    stamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
    assert stamp.match(ours["timestamp"]) and stamp.match(theirs["timestamp"])
    assert {**ours, "timestamp": ""} == {**theirs, "timestamp": ""}


def test_lines_of_one_loop_turn_leave_in_one_write(json_logging: None) -> None:
    stream = CountingStream()
    access = AccessLog(get_logger("gateway.proxy"), "gateway.proxy", stream, enabled=True)

    async def finish_three() -> int:
        for n in range(3):
            access.info("request_finished", **{**FIELDS, "request_id": f"r-{n}"})
        held = stream.writes
        await asyncio.sleep(0)  # the turn ends: the flush scheduled for it runs
        await asyncio.sleep(0)
        return held

    assert asyncio.run(finish_three()) == 0
    assert stream.writes == 1
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["request_id"] for line in lines] == ["r-0", "r-1", "r-2"]


def test_disabled_writes_nothing(json_logging: None) -> None:
    stream = CountingStream()
    access = AccessLog(get_logger("gateway.proxy"), "gateway.proxy", stream, enabled=False)
    access.info("request_finished", **FIELDS)
    access.flush()
    assert stream.getvalue() == ""


def test_console_output_goes_through_structlog() -> None:
    console = io.StringIO()
    configure_logging("info", json=False)
    try:
        log = structlog.wrap_logger(
            structlog.PrintLogger(console),
            processors=structlog.get_config()["processors"],
        ).bind(logger="gateway.proxy")
        stream = CountingStream()
        AccessLog(log, "gateway.proxy", stream, enabled=True).info("request_finished", **FIELDS)
    finally:
        structlog.reset_defaults()
    assert stream.getvalue() == ""
    assert "request_finished" in console.getvalue() and "r-1" in console.getvalue()
