import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import httpx
import pytest

from gateway.kinds import KINDS
from gateway.poller import MetricsPoller
from gateway.upstream import Upstream
from routers import Metrics
from routers.pool import ReplicaPool

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


def vllm_text(waiting: int, running: int) -> str:
    return (
        "# TYPE vllm:num_requests_waiting gauge\n"
        f'vllm:num_requests_waiting{{engine="0",model_name="m"}} {waiting}\n'
        "# TYPE vllm:num_requests_running gauge\n"
        f'vllm:num_requests_running{{engine="0",model_name="m"}} {running}\n'
    )


def make_pool(*names: str) -> ReplicaPool:
    return ReplicaPool(Upstream(id=n, url=f"http://{n}", models=("m",)) for n in names)


def client(handler: Handler) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_records_each_replicas_metrics() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/metrics"
        waiting = {"a": 3, "b": 0}[request.url.host]
        return httpx.Response(200, text=vllm_text(waiting, 1))

    pool = make_pool("a", "b")
    pool.acquire("a")  # dispatched before this scrape: covered by it
    async with client(handler) as http:
        poller = MetricsPoller(pool, http, interval=1.0, timeout=0.5)
        await asyncio.gather(poller.scrape_once("a"), poller.scrape_once("b"))
    assert pool.get("a").metrics == Metrics(waiting=3, running=1)
    assert pool.get("b").metrics == Metrics(waiting=0, running=1)
    assert pool.get("a").dispatched_since_scrape == 0
    assert not pool.view(pool.get("a")).metrics_stale


async def test_requests_dispatched_while_a_scrape_is_in_flight_stay_credited() -> None:
    pool = make_pool("a")

    async def handler(request: httpx.Request) -> httpx.Response:
        pool.acquire("a")  # the proxy sends two requests while the scrape is on the wire
        pool.acquire("a")
        return httpx.Response(200, text=vllm_text(0, 0))

    pool.acquire("a")
    async with client(handler) as http:
        await MetricsPoller(pool, http, interval=1.0).scrape_once("a")
    assert pool.get("a").dispatched_since_scrape == 2


@pytest.mark.parametrize("status", [404, 405])
async def test_replica_without_metrics_is_left_to_local_counts(status: int) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, text="404 page not found")

    pool = make_pool("ollama")
    async with client(handler) as http:
        await MetricsPoller(pool, http, interval=1.0).scrape_once("ollama")
    replica = pool.get("ollama")
    assert replica.metrics is None and not replica.scrape_failed
    assert pool.view(replica).metrics_stale


async def test_metrics_without_engine_series_are_absent_too() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="# TYPE up gauge\nup 1\n")

    pool = make_pool("a")
    async with client(handler) as http:
        await MetricsPoller(pool, http, interval=1.0).scrape_once("a")
    assert pool.get("a").metrics is None and not pool.get("a").scrape_failed


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>oops</html>"),
        httpx.Response(500, text="internal error"),
        httpx.Response(200, content=b"\xff\xfe\x00garbage"),
    ],
    ids=["garbage", "500", "binary"],
)
async def test_a_bad_scrape_marks_old_metrics_unknown(response: httpx.Response) -> None:
    pool = make_pool("a")
    pool.record_metrics("a", Metrics(waiting=0, running=0))

    async def handler(request: httpx.Request) -> httpx.Response:
        return response

    async with client(handler) as http:
        await MetricsPoller(pool, http, interval=1.0).scrape_once("a")
    replica = pool.get("a")
    assert replica.scrape_failed
    assert replica.metrics == Metrics(waiting=0, running=0)  # kept for /admin
    assert pool.view(replica).metrics_stale


async def test_connection_refused_is_a_failure_not_a_crash() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    pool = make_pool("a")
    pool.record_metrics("a", Metrics(waiting=0, running=0))
    async with client(handler) as http:
        await MetricsPoller(pool, http, interval=1.0).scrape_once("a")
    assert pool.get("a").scrape_failed


def test_timeout_is_kept_below_the_interval() -> None:
    pool = make_pool("a")
    http = httpx.AsyncClient()
    assert MetricsPoller(pool, http, interval=1.0, timeout=5.0)._timeout < 1.0
    assert MetricsPoller(pool, http, interval=1.0)._timeout < 1.0
    with pytest.raises(ValueError, match="positive"):
        MetricsPoller(pool, http, interval=0)


async def test_a_hanging_replica_delays_neither_the_others_nor_itself_past_the_timeout() -> None:
    scrapes: Counter[str] = Counter()
    hang_forever = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        host = request.url.host
        scrapes[host] += 1
        if host == "hung":
            await hang_forever.wait()
        return httpx.Response(200, text=vllm_text(1, 1))

    pool = make_pool("fast", "hung")
    async with client(handler) as http:
        poller = MetricsPoller(pool, http, interval=0.1, timeout=0.05)
        task = asyncio.create_task(poller.run())
        await asyncio.sleep(0.75)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # About 8 ticks in 0.75 s each: the fast one is never held up by the hung one,
    # and the hung one is retried every tick (each try cut off by the timeout).
    assert scrapes["fast"] >= 3
    assert scrapes["hung"] >= 3
    assert pool.get("fast").metrics == Metrics(waiting=1, running=1)
    assert pool.get("hung").metrics is None and pool.get("hung").scrape_failed


async def test_run_scrapes_at_the_interval_and_cancels_cleanly() -> None:
    times: list[float] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        times.append(time.monotonic())
        return httpx.Response(200, text=vllm_text(0, 0))

    pool = make_pool("a")
    async with client(handler) as http:
        task = asyncio.create_task(MetricsPoller(pool, http, interval=0.1).run())
        await asyncio.sleep(0.35)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 1.0  # at once, give or take a loaded machine
    # Ticks at 0, 0.1, 0.2, 0.3: never faster than the interval.
    assert 2 <= len(times) <= 4
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap > 0.08 for gap in gaps), gaps
    # Nothing of the poller is left running.
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("scrape ")] == []


async def test_replicas_are_scraped_at_staggered_times() -> None:
    first: dict[str, float] = {}

    async def handler(request: httpx.Request) -> httpx.Response:
        first.setdefault(request.url.host, time.monotonic())
        return httpx.Response(200, text=vllm_text(0, 0))

    pool = make_pool("a", "b")
    async with client(handler) as http:
        task = asyncio.create_task(MetricsPoller(pool, http, interval=0.4).run())
        await asyncio.sleep(0.35)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # "a" at once, "b" half an interval later.
    assert first["b"] - first["a"] > 0.15


async def test_each_kind_reads_its_own_engine_names_or_nothing() -> None:
    scraped: Counter[str] = Counter()
    both = vllm_text(7, 1) + (
        "# TYPE sglang:num_queue_reqs gauge\n"
        'sglang:num_queue_reqs{engine_type="unified",model_name="m",pp_rank="0",tp_rank="0"} 2\n'
        "# TYPE sglang:num_running_reqs gauge\n"
        'sglang:num_running_reqs{engine_type="unified",model_name="m",pp_rank="0",tp_rank="0"} 3\n'
    )

    async def handler(request: httpx.Request) -> httpx.Response:
        scraped[request.url.host] += 1
        if request.url.host == "lcpp":  # llama-server without --metrics
            return httpx.Response(501, json={"error": {"type": "not_supported_error"}})
        return httpx.Response(200, text=both)

    replicas = []
    for name, kind in [("s", "sglang"), ("v", "vllm"), ("lcpp", "llamacpp"), ("o", "ollama")]:
        replica = Upstream(id=name, url=f"http://{name}", models=("m",))
        replica.set_kind(KINDS[kind])
        replicas.append(replica)
    pool = ReplicaPool(replicas)
    async with client(handler) as http:
        poller = MetricsPoller(pool, http, interval=1.0, timeout=0.5)
        for name in ("s", "v", "lcpp", "o"):
            await poller.scrape_once(name)
    assert pool.get("s").metrics == Metrics(waiting=2, running=3)
    assert pool.get("v").metrics == Metrics(waiting=7, running=1)
    assert pool.get("lcpp").metrics is None and not pool.get("lcpp").scrape_failed
    # Ollama has no /metrics: it is never asked, and is routed by local counts.
    assert pool.get("o").metrics is None and scraped["o"] == 0


async def test_a_scrape_cancelled_as_its_answer_arrives_is_still_cancelled() -> None:
    # asyncio.wait_for of Python 3.11 returns the answer when the task is cancelled in the
    # same turn as the answer lands, and the cancellation is lost: the poller's loop then
    # runs on, and stopping the gateway waits for it forever.
    answered = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        await answered.wait()
        return httpx.Response(200, text=vllm_text(0, 1))

    async with client(handler) as http:
        poller = MetricsPoller(make_pool("a"), http, interval=10.0)
        scrape = asyncio.create_task(poller.scrape_once("a"))
        await asyncio.sleep(0.01)  # the scrape now awaits its answer
        answered.set()  # the answer lands in the same turn as the cancellation
        assert scrape.cancel()
        async with asyncio.timeout(5.0):
            with pytest.raises(asyncio.CancelledError):
                await scrape
