"""Active health checks: GET /health on every replica, and its models from /v1/models.

A failed check ejects the replica (the pool backs off exponentially before the next
try); a passing check brings it back. Each replica has its own loop, so one that
hangs delays no other. Passive ejections (errors on real traffic) are the proxy's;
this checker is what brings those replicas back too.
"""

import asyncio
from typing import Any

import httpx

from gateway.periodic import ProbeFailed, describe_error, every_replica
from gateway.pool import ReplicaPool
from turnout.logs import get_logger

# How often an ejected replica is looked at to see whether its backoff has ended.
_BACKOFF_TICK = 0.25


class HealthChecker:
    def __init__(
        self,
        pool: ReplicaPool,
        client: httpx.AsyncClient,
        interval: float = 2.0,
        timeout: float | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("health interval must be positive")
        self._pool = pool
        self._log = get_logger("gateway.health")
        self._client = client
        self._interval = interval
        self._timeout = min(timeout or interval / 2, interval)

    async def run(self) -> None:
        """Check every replica forever; returns only when cancelled."""
        await every_replica(
            self._pool, self.check_once, self._period, what="health_check", log=self._log
        )

    def _period(self, replica_id: str) -> float:
        # An ejected replica is looked at often, so it is back as soon as its backoff
        # ends; check_once skips it until then.
        if self._pool.get(replica_id).healthy:
            return self._interval
        return min(_BACKOFF_TICK, self._interval)

    async def refresh_all(self) -> None:
        """Check every replica once, concurrently, and learn their models. For start-up,
        so the gateway knows what is served before the first request arrives. Takes at
        most twice the timeout: /health, then /v1/models (which is also the probe where
        there is no /health)."""
        await asyncio.gather(*(self.check_once(r.id) for r in self._pool))

    async def check_once(self, replica_id: str) -> bool:
        """One check (skipped while an ejected replica's backoff lasts). True if the
        replica is healthy afterwards. Never raises (except when cancelled)."""
        if not self._pool.due_for_check(replica_id):
            return False
        replica = self._pool.get(replica_id)
        models: httpx.Response | None = None
        try:
            response = await self._get(f"{replica.url}/health", replica.api_key)
            if response.status_code in (404, 405):
                # No /health (Ollama's OpenAI API): a model list that answers is alive.
                response = models = await self._get(f"{replica.url}/v1/models", replica.api_key)
            if response.status_code != 200:
                path = response.request.url.path
                raise ProbeFailed(f"{path} answered HTTP {response.status_code}")
        except Exception as exc:
            reason = describe_error(exc)
            if self._pool.mark_down(replica_id, reason):
                self._log.warning("replica_ejected", replica=replica_id, reason=reason, by="health")
            return False
        if self._pool.mark_up(replica_id):
            self._log.info("replica_restored", replica=replica_id)
        await self.refresh_models(replica_id, models)
        return True

    async def refresh_models(self, replica_id: str, response: httpx.Response | None = None) -> None:
        """Read the replica's /v1/models (unless `response` is one already) into the
        pool; keep what we had on failure."""
        replica = self._pool.get(replica_id)
        try:
            if response is None:
                response = await self._get(f"{replica.url}/v1/models", replica.api_key)
            response.raise_for_status()
            models, max_len = parse_models(response.json())
        except Exception as exc:
            error = describe_error(exc)
            self._log.warning("models_refresh_failed", replica=replica_id, error=error)
            return
        if set(models) != set(replica.models) and not replica.models_pinned:
            self._log.info("models_changed", replica=replica_id, models=sorted(models))
        self._pool.set_models(replica_id, models, max_len)

    async def _get(self, url: str, api_key: str | None = None) -> httpx.Response:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else None
        # httpx's timeouts are per phase; this bounds the whole exchange.
        async with asyncio.timeout(self._timeout):
            return await self._client.get(url, timeout=self._timeout, headers=headers)


def parse_models(body: Any) -> tuple[list[str], dict[str, int]]:
    """Model ids and their max_model_len from an OpenAI /v1/models body."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise ValueError("not an OpenAI model list")
    models: list[str] = []
    max_len: dict[str, int] = {}
    for entry in body["data"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            continue
        models.append(entry["id"])
        length = entry.get("max_model_len")
        if isinstance(length, int) and not isinstance(length, bool) and length > 0:
            max_len[entry["id"]] = length
    return models, max_len
