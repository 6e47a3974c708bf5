"""The parser, poller and health checker against real `vllm-sim serve` processes."""

import asyncio
import threading
import time
from collections.abc import Callable

import httpx
import openai
import pytest

from gateway.health import HealthChecker
from gateway.poller import MetricsPoller
from gateway.upstream import Upstream
from routers.pool import ReplicaPool
from tests.loadtest.sim.serving import MODEL, serve_argv, wait_until
from tests.procs import Proc
from turnout.engine_metrics import parse_metrics


def pool_of(*procs: Proc) -> ReplicaPool:
    return ReplicaPool(Upstream(id=f"r{i}", url=p.url) for i, p in enumerate(procs))


def load(proc: Proc, n: int) -> list[threading.Thread]:
    """n long streams in the background (daemon threads; the replica is stopped after)."""

    def one() -> None:
        sdk = openai.OpenAI(base_url=proc.url + "/v1", api_key="x", max_retries=0, timeout=30)
        try:
            stream = sdk.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "go"}],
                max_tokens=500,
                stream=True,
                extra_body={"ignore_eos": True},
            )
            for _ in stream:
                pass
        except openai.OpenAIError:
            pass  # the replica is stopped under it at the end of the test

    threads = [threading.Thread(target=one, daemon=True) for _ in range(n)]
    for thread in threads:
        thread.start()
    return threads


@pytest.mark.parametrize("legacy", [False, True], ids=["current", "pre-0.9"])
def test_parser_reads_the_simulators_metrics_under_load(
    spawn: Callable[..., Proc], legacy: bool
) -> None:
    flags = ["--max-num-seqs", "2", "--time-scale", "5"] + (["--legacy-metrics"] if legacy else [])
    proc = spawn(serve_argv(*flags))
    idle = parse_metrics(httpx.get(proc.url + "/metrics").text)
    assert idle is not None and (idle.waiting, idle.running) == (0, 0)
    load(proc, 5)

    def loaded() -> bool:
        metrics = parse_metrics(httpx.get(proc.url + "/metrics").text)
        return metrics is not None and (metrics.running, metrics.waiting) == (2, 3)

    assert wait_until(loaded, timeout=5.0)
    metrics = parse_metrics(httpx.get(proc.url + "/metrics").text)
    assert metrics is not None and metrics.kv_usage is not None and 0 < metrics.kv_usage <= 1


async def test_a_hanging_metrics_endpoint_delays_no_other_scrape(
    spawn: Callable[..., Proc],
) -> None:
    fine, hung = spawn(serve_argv()), spawn(serve_argv("--fault-metrics-hang"))
    pool = pool_of(fine, hung)
    async with httpx.AsyncClient() as http:
        task = asyncio.create_task(MetricsPoller(pool, http, interval=0.2, timeout=0.1).run())
        ages = []
        for _ in range(8):
            await asyncio.sleep(0.15)
            view = pool.view(pool.get("r0"))
            ages.append(view.metrics_age)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # r0 is scraped every 0.2 s however long r1 hangs: its data never gets old.
    assert all(age is not None and age < 1.0 for age in ages[2:]), ages
    assert not pool.view(pool.get("r0")).metrics_stale
    assert pool.get("r1").metrics is None and pool.get("r1").scrape_failed


async def test_health_fault_ejects_and_clearing_it_restores(spawn: Callable[..., Proc]) -> None:
    proc = spawn(serve_argv())
    pool = ReplicaPool([Upstream(id="r0", url=proc.url)], backoff_base=0.2)
    async with httpx.AsyncClient() as http:
        checker = HealthChecker(pool, http, interval=0.2, timeout=0.5)
        await checker.refresh_all()
        assert pool.get("r0").models == (MODEL,)
        assert pool.get("r0").max_model_len[MODEL] > 0

        task = asyncio.create_task(checker.run())
        try:
            await http.post(proc.url + "/sim/faults", json={"health_fail": True})
            assert await _eventually(lambda: not pool.get("r0").healthy)
            await http.post(proc.url + "/sim/faults", json={"reset": True})
            started = time.monotonic()
            assert await _eventually(lambda: pool.get("r0").healthy)
            # Back within the backoff (0.2-0.4 s here) and a tick, not after a long wait.
            assert time.monotonic() - started < 2.0
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def _eventually(check: Callable[[], bool]) -> bool:
    """Poll `check` every 20 ms for at most 5 s."""
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.02)
    return check()
