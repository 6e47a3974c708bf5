"""The metrics poller: every replica's /metrics, scraped at an interval, into the pool.

Only replicas whose kind has /metrics are scraped, for that engine's names
(turnout/engine_metrics.py); a replica of unknown kind is tried for any engine's. Ollama,
llama-cpp-python and plain OpenAI-compatible servers have none: strategies route them
by the gateway's own in-flight counts.

`run()` is the one background task the lifespan starts and cancels. Inside it each
replica has its own loop, so a slow or hanging /metrics delays nobody else's scrape,
and no request ever waits on a scrape. Each scrape is cut off before the next tick.
"""

import asyncio

import httpx

from gateway.periodic import ProbeFailed, describe_error, every_replica
from gateway.upstream import Upstream
from routers import Metrics
from routers.pool import ReplicaPool
from turnout.engine_metrics import parse_metrics
from turnout.logs import get_logger


class MetricsPoller:
    def __init__(
        self,
        pool: ReplicaPool[Upstream],
        client: httpx.AsyncClient,
        interval: float = 1.0,
        timeout: float | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("poll interval must be positive")
        self._pool = pool
        self._log = get_logger("gateway.poller")
        self._client = client
        self._interval = interval
        # A scrape must end before the next one is due.
        self._timeout = min(timeout or interval / 2, interval * 0.9)
        # Last outcome per replica ("ok", "absent", or an error), to log changes only;
        # forgotten when a replica leaves, so that churn does not grow it.
        self._outcome: dict[str, str] = {}
        pool.watch(self._membership_changed)

    async def run(self) -> None:
        """Scrape every replica forever; returns only when cancelled."""
        # Loops start spread over one interval, so the replicas' scrapes (and their
        # parsing, on the event loop) do not all land in the same instant.
        await every_replica(
            self._pool,
            self.scrape_once,
            lambda _replica_id: self._interval,
            what="scrape",
            log=self._log,
            spread_over=self._interval,
        )

    async def scrape_once(self, replica_id: str) -> None:
        """Scrape one replica and record the outcome in the pool."""
        replica = self._pool.get(replica_id)
        if replica.kind is not None and replica.kind.metrics_engine is None:
            self._note(replica_id, "absent")
            return
        mark = self._pool.scrape_mark(replica_id)
        try:
            # Not asyncio.wait_for: in Python 3.11 it loses a cancellation that lands in
            # the turn the answer does, and the loop then never stops.
            async with asyncio.timeout(self._timeout):
                metrics = await self._fetch(replica)
        except _Absent:
            # A server without /metrics (or with it switched off): local counts.
            self._note(replica_id, "absent")
            return
        except Exception as exc:  # refused, timed out, HTTP error, garbage text
            self._pool.record_scrape_failure(replica_id)
            self._note(replica_id, describe_error(exc))
            return
        if metrics is None:
            self._note(replica_id, "absent")
            return
        # Requests sent while the scrape was in flight may not be in it: the mark keeps
        # them credited, or a slow scrape would forget them and invite a herd.
        self._pool.record_metrics(replica_id, metrics, mark=mark)
        self._note(replica_id, "ok")

    async def _fetch(self, replica: Upstream) -> Metrics | None:
        headers = (
            {}
            if replica.authorization is None
            else {"authorization": replica.authorization.decode()}
        )
        response = await self._client.get(
            f"{replica.url}/metrics", timeout=self._timeout, headers=headers
        )
        # 501: llama-server without --metrics; 404: SGLang without --enable-metrics.
        if response.status_code in (404, 405, 501):
            raise _Absent
        if response.status_code != 200:
            raise ProbeFailed(f"HTTP {response.status_code}")
        engine = None if replica.kind is None else replica.kind.metrics_engine
        return parse_metrics(response.text, engine)

    def _membership_changed(self, replica_id: str, present: bool) -> None:
        if not present:
            self._outcome.pop(replica_id, None)

    def _note(self, replica_id: str, outcome: str) -> None:
        before = self._outcome.get(replica_id)
        self._outcome[replica_id] = outcome
        if outcome == before:
            return
        if outcome == "ok":
            self._log.info("metrics_scraped", replica=replica_id)
        elif outcome == "absent":
            self._log.info(
                "metrics_unavailable", replica=replica_id, using="local in-flight counts"
            )
        else:
            self._log.warning("scrape_failed", replica=replica_id, error=outcome)


class _Absent(Exception):
    """The replica serves no /metrics (or none this gateway understands)."""
