"""The read-delay probe: how long arriving bytes wait for a busy event loop."""

import asyncio
import sys
import time
from collections.abc import Callable

from loadtest.drive.readdelay import ReadDelayProbe
from loadtest.drive.runner import run_schedule
from loadtest.workload.schedule import build_schedule
from tests.loadtest.helpers import small_workload
from tests.procs import Proc


async def test_a_blocked_loop_shows_up_as_read_delay() -> None:
    async with ReadDelayProbe(interval_s=0.002) as probe:
        await asyncio.sleep(0.05)
        for _ in range(3):
            time.sleep(0.04)  # noqa: ASYNC251 - the loop is busy on purpose: datagrams wait
            await asyncio.sleep(0.01)
    assert len(probe.delays) >= 20
    # A datagram that arrived early in a 40 ms block waited most of it.
    assert max(probe.delays) >= 0.025
    assert min(probe.delays) < 0.025
    if sys.platform == "linux":
        assert probe.kernel_stamps  # arrival times from the kernel, not from the thread


async def test_a_run_reports_its_read_delay(fake_openai: Callable[..., Proc]) -> None:
    server = fake_openai(ttft=0.02, gap=0.01)
    result = await run_schedule(server.url, build_schedule(small_workload(requests=4), seed=0))
    assert all(r.ok for r in result.records)
    delay = result.read_delay
    assert 0.0 <= delay.p50_s <= delay.p99_s <= delay.max_s
    assert delay.max_s > 0.0  # it sampled something while the run lasted


async def test_the_probe_stops_its_thread() -> None:
    probe = ReadDelayProbe(interval_s=0.005)
    async with probe:
        await asyncio.sleep(0.02)
    assert probe._thread is not None and not probe._thread.is_alive()
    count = len(probe.delays)
    await asyncio.sleep(0.03)
    assert len(probe.delays) == count
