"""Active health checks: each replica's liveness probe, and its models from its listing.

The probe and the listing depend on the replica's kind (gateway/kinds.py): GET /health
on vLLM, SGLang and llama-server, /openapi.json on llama-cpp-python, / on Ollama,
/v1/models on any other OpenAI-compatible server. A replica whose kind is not known yet
gets /health, or /v1/models where there is no /health, and its kind is detected from its
answers once it answers; a configured kind is checked against them the same way, and a
replica whose answers contradict it stays out.

A failed check ejects the replica (the pool backs off exponentially before the next
try); a passing check brings it back. Each replica has its own loop, so one that
hangs delays no other. Passive ejections (errors on real traffic) are the proxy's;
this checker is what brings those replicas back too.
"""

import asyncio
from typing import Any

import httpx

from gateway.kinds import KINDS, detect, mismatch
from gateway.periodic import ProbeFailed, describe_error, every_replica
from gateway.upstream import Upstream
from routers.pool import ReplicaPool
from turnout.logs import get_logger

# How often an ejected replica is looked at to see whether its backoff has ended.
_BACKOFF_TICK = 0.25


class HealthChecker:
    def __init__(
        self,
        pool: ReplicaPool[Upstream],
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
        """Check every replica once, concurrently, and learn their kinds and models. For
        start-up, so the gateway knows what is served before the first request arrives.
        Each exchange is bounded by the timeout; a replica that hangs fails its probe
        and is asked nothing more."""
        await asyncio.gather(*(self.check_once(r.id) for r in self._pool))

    async def check_once(self, replica_id: str) -> bool:
        """One check (skipped while an ejected replica's backoff lasts). True if the
        replica is healthy afterwards. Never raises (except when cancelled)."""
        if not self._pool.due_for_check(replica_id):
            return False
        replica = self._pool.get(replica_id)
        kind = replica.kind
        listing: httpx.Response | None = None
        try:
            if kind is None:
                response = await self._get(replica, "/health")
                if response.status_code in (404, 405):
                    # No /health (Ollama, llama-cpp-python): a model list that answers.
                    response = listing = await self._get(replica, "/v1/models")
            else:
                response = await self._get(replica, kind.health_path, kind.health_timeout_floor)
                if kind.health_path == kind.models_path:
                    listing = response
            if response.status_code != 200:
                path = response.request.url.path
                raise ProbeFailed(f"{path} answered HTTP {response.status_code}")
            if not replica.kind_verified:
                await self._identify(replica, listing)
        except Exception as exc:
            reason = describe_error(exc)
            if self._pool.mark_down(replica_id, reason):
                self._log.warning("replica_ejected", replica=replica_id, reason=reason, by="health")
            return False
        if self._pool.mark_up(replica_id):
            self._log.info("replica_restored", replica=replica_id)
        if replica.kind is not None and replica.kind.models_path != "/v1/models":
            listing = None  # the probe's /v1/models answer is not this kind's listing
        await self.refresh_models(replica_id, listing)
        return True

    async def _identify(self, replica: Upstream, listing: httpx.Response | None) -> None:
        """Detect the kind of a replica that has none yet, or check the configured one
        against the server's answers; ProbeFailed when they contradict it."""
        if listing is not None and listing.request.url.path != "/v1/models":
            listing = None
        detection = await detect(lambda path: self._get(replica, path), listing)
        if detection is None:
            return  # it answers, but not enough to tell: try again at the next check
        if replica.kind is None:
            replica.set_kind(KINDS[detection.kind])
            self._log.info(
                "replica_kind_detected",
                replica=replica.id,
                kind=detection.kind,
                evidence=detection.evidence,
            )
        else:
            problem = mismatch(replica.kind, detection)
            if problem is not None:
                self._log.error("replica_kind_mismatch", replica=replica.id, problem=problem)
                raise ProbeFailed(problem)
        replica.kind_verified = True

    async def refresh_models(self, replica_id: str, response: httpx.Response | None = None) -> None:
        """Read the replica's model listing (unless `response` is one already) into the
        pool; keep what we had on failure."""
        replica = self._pool.get(replica_id)
        kind = replica.kind
        if response is None and kind is not None and kind.list_when_idle and replica.in_flight:
            return  # llama-cpp-python: its listing would interrupt the stream in progress
        path = "/v1/models" if kind is None else kind.models_path
        try:
            if response is None:
                response = await self._get(replica, path)
            response.raise_for_status()
            body = response.json()
            max_len: dict[str, int] = {}
            if path == "/api/tags":
                models = parse_tags(body)
            else:
                models, max_len = parse_models(body)
        except Exception as exc:
            error = describe_error(exc)
            self._log.warning("models_refresh_failed", replica=replica_id, error=error)
            return
        public = replica.public_names(models)
        if set(public) != set(replica.models) and not replica.models_pinned:
            self._log.info("models_changed", replica=replica_id, models=sorted(public))
        self._pool.set_models(replica_id, models, max_len)

    async def _get(self, replica: Upstream, path: str, floor: float = 0.0) -> httpx.Response:
        timeout = max(self._timeout, floor)
        headers = (
            {}
            if replica.authorization is None
            else {"authorization": replica.authorization.decode()}
        )
        # httpx's timeouts are per phase; this bounds the whole exchange.
        async with asyncio.timeout(timeout):
            return await self._client.get(replica.url + path, timeout=timeout, headers=headers)


def parse_models(body: Any) -> tuple[list[str], dict[str, int]]:
    """Model ids and their max_model_len from an OpenAI /v1/models body. `"data": null`
    is an empty list (Ollama says so when no model is pulled: openai/openai.go)."""
    if not isinstance(body, dict) or "data" not in body:
        raise ValueError("not an OpenAI model list")
    data = body["data"]
    if data is None:
        return [], {}
    if not isinstance(data, list):
        raise ValueError("not an OpenAI model list")
    models: list[str] = []
    max_len: dict[str, int] = {}
    for entry in data:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            continue
        models.append(entry["id"])
        length = entry.get("max_model_len")
        if isinstance(length, int) and not isinstance(length, bool) and length > 0:
            max_len[entry["id"]] = length
    return models, max_len


def parse_tags(body: Any) -> list[str]:
    """Model names from Ollama's GET /api/tags (`{"models": [{"name": ...}, ...]}`)."""
    if not isinstance(body, dict) or "models" not in body:
        raise ValueError("not an Ollama model list")
    entries = body["models"] or []
    if not isinstance(entries, list):
        raise ValueError("not an Ollama model list")
    return [e["name"] for e in entries if isinstance(e, dict) and isinstance(e.get("name"), str)]
