"""One routing model, two clocks: the gateway's poller and the virtual runner leave the replica
pool in the same state for the same events, and the virtual scrape reads what the gateway's
parser would read from the simulator's /metrics page."""

import asyncio

import httpx
import pytest

from gateway.poller import MetricsPoller
from gateway.upstream import Upstream
from loadtest.sim.exposition import LatencyHistograms, VllmCollector, metrics_registry, render
from loadtest.sim.types import EngineStats
from loadtest.sim.virtual import VirtualScrapes, metrics_of
from routers import Metrics, ReplicaView
from routers.pool import ReplicaPool
from turnout.engine_metrics import parse_metrics


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def exposition(stats: EngineStats) -> str:
    collector = VllmCollector("m", lambda: stats, LatencyHistograms())
    return render(metrics_registry(collector)).decode()


STATS = EngineStats(
    waiting=3,
    running=5,
    kv_usage=0.25,
    prefix_queries=400,
    prefix_hits=100,
    preemptions=0,
    prompt_tokens=400,
    generation_tokens=50,
)


@pytest.mark.parametrize(
    "stats",
    [
        STATS,
        EngineStats(0, 0, 0.0, 0, 0, 0, 0, 0),  # before any traffic: no prefix-hit rate
    ],
)
def test_the_virtual_scrape_reads_what_the_gateway_parses(stats: EngineStats) -> None:
    assert parse_metrics(exposition(stats)) == metrics_of(stats)


async def test_poller_and_virtual_scrapes_leave_identical_views() -> None:
    clock = Clock()

    def pool() -> ReplicaPool:
        # The gateway's pool holds Upstreams (a Replica with its server kind, unknown here).
        members = [Upstream(id=n, url=f"http://{n}", models=("m",)) for n in ("a", "b")]
        return ReplicaPool(members, stale_after=3.0, clock=clock)

    live, virtual = pool(), pool()
    answer = asyncio.Event()
    entered = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        entered.set()
        await answer.wait()
        if request.url.host == "b":
            return httpx.Response(500)
        return httpx.Response(200, text=exposition(STATS))

    poller = MetricsPoller(live, httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    scrapes = VirtualScrapes(virtual)

    def both(action: str, *args: object) -> None:
        for each in (live, virtual):
            getattr(each, action)(*args)

    def views() -> tuple[list[ReplicaView], list[ReplicaView]]:
        return [live.view(r) for r in live], [virtual.view(r) for r in virtual]

    both("acquire", "a", 300)
    both("acquire", "a", 200)
    both("acquire", "b", 10)
    clock.now += 0.5
    # Scrapes of a and b begin; more is sent while they are on the wire.
    tasks = [asyncio.create_task(poller.scrape_once(name)) for name in ("a", "b")]
    await asyncio.wait_for(entered.wait(), 5)
    scrapes.begin("a", metrics_of(STATS))
    scrapes.begin("b", None)  # b's scrape fails
    both("acquire", "a", 50)
    both("first_byte", "a", 300)
    clock.now += 0.01
    answer.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    scrapes.end("a")
    scrapes.end("b")
    live_views, virtual_views = views()
    assert live_views == virtual_views
    a = live.view(live.get("a"))
    assert a.dispatched_since_scrape == 1  # the one sent during the scrape stays credited
    assert (a.in_flight, a.awaiting_first_byte, a.awaiting_prompt_tokens) == (3, 2, 250)
    assert a.metrics == Metrics(3.0, 5.0, 0.25, 0.25) and not a.metrics_stale
    assert live.view(live.get("b")).metrics_stale
    # Requests end; time passes until the scrape is stale on both.
    both("release", "a", 300)
    for each in (live, virtual):
        each.release("a", 200, answered=False)
    clock.now += 3.5
    assert views()[0] == views()[1]
    assert all(live.view(r).metrics_stale for r in live)
    assert live.view(live.get("a")).awaiting_prompt_tokens == 50
