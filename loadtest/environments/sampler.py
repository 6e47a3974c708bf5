"""Sample each replica's queue, running batch and KV-cache usage while a run lasts.

Reads the gateway's GET /admin/replicas when there is one; otherwise each replica's own
/metrics (vLLM's names, parsed by the gateway's parser). One small request per replica per
interval, on the generator's event loop: cheap enough not to disturb its send times.
`sampled_run` runs a schedule with a sampler beside it (`loadtest run` and `compare` share it).
"""

import asyncio
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from loadtest.drive.progress import ProgressSink
from loadtest.drive.runner import RunResult, run_schedule
from loadtest.workload.schedule import Schedule
from turnout.engine_metrics import MetricsParseError, parse_metrics
from turnout.logs import get_logger


def _log() -> Any:
    # Asked for at each use: a logger bound at import would predate configure_logging.
    return get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ReplicaSample:
    # Seconds since the epoch; reports subtract the run's start.
    at: float
    replica: str
    waiting: float | None
    running: float | None
    kv_usage: float | None
    in_flight: int | None = None
    healthy: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ReplicaSampler:
    """Polls `admin_url`/admin/replicas, or else the `replicas` (name, url) /metrics."""

    def __init__(
        self,
        *,
        admin_url: str | None,
        replicas: Sequence[tuple[str, str]] = (),
        interval_s: float = 0.5,
        timeout_s: float = 0.4,
        admin_key: str | None = None,
    ) -> None:
        self.admin_url = admin_url.rstrip("/") if admin_url else None
        self._admin_headers = {"authorization": f"Bearer {admin_key}"} if admin_key else {}
        self.replicas = list(replicas)
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.samples: list[ReplicaSample] = []
        self.source: str | None = None
        self._client: httpx.AsyncClient | None = None
        self._use_admin = False

    async def __aenter__(self) -> "ReplicaSampler":
        """Open the client and find the source before the run starts: building a client
        costs milliseconds of CPU that must not delay the run's first sends."""
        self._client = httpx.AsyncClient(timeout=self.timeout_s, verify=False)
        self._use_admin = self.admin_url is not None and await self._admin_works(self._client)
        if self._use_admin:
            self.source = "admin"
        elif self.replicas and await self._metrics_work(self._client):
            self.source = "metrics"
        else:
            _log().debug("sampling_skipped", reason="no /admin/replicas and no vLLM /metrics")
        return self

    def describe(self) -> str:
        """One line: where the samples come from, or why there are none (after entering)."""
        if self.source == "admin":
            return f"replica state sampled from {self.admin_url}/admin/replicas"
        if self.source == "metrics":
            urls = ", ".join(f"{url.rstrip('/')}/metrics" for _, url in self.replicas)
            return f"replica state sampled from {urls}"
        where = self.admin_url or ", ".join(url for _, url in self.replicas) or "the target"
        return f"replica state not sampled: {where} has no /admin/replicas and no vLLM /metrics"

    async def __aexit__(self, *_exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def run(self) -> None:
        """Sample until cancelled (inside `async with`); never raises for what targets do."""
        client = self._client
        if client is None or self.source is None:
            return
        next_at = time.monotonic()
        while True:
            try:
                if self._use_admin:
                    await self._sample_admin(client)
                else:
                    await self._sample_metrics(client)
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                _log().debug("sample_failed", error=repr(exc))
            next_at += self.interval_s
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def _admin_works(self, client: httpx.AsyncClient) -> bool:
        try:
            answer = await client.get(
                f"{self.admin_url}/admin/replicas", headers=self._admin_headers
            )
            return answer.status_code == 200 and "replicas" in answer.json()
        except (httpx.HTTPError, ValueError):
            return False

    async def _metrics_work(self, client: httpx.AsyncClient) -> bool:
        """One sample now; a target whose /metrics has no vLLM gauges is not polled again."""
        await self._sample_metrics(client)
        return bool(self.samples)

    async def _sample_admin(self, client: httpx.AsyncClient) -> None:
        answer = await client.get(f"{self.admin_url}/admin/replicas", headers=self._admin_headers)
        answer.raise_for_status()
        now = time.time()
        for replica in orjson.loads(answer.content)["replicas"]:
            self.samples.append(
                ReplicaSample(
                    at=now,
                    replica=str(replica["name"]),
                    waiting=replica.get("waiting"),
                    running=replica.get("running"),
                    kv_usage=replica.get("kv_usage"),
                    in_flight=replica.get("in_flight"),
                    healthy=replica.get("healthy"),
                )
            )

    async def _sample_metrics(self, client: httpx.AsyncClient) -> None:
        answers = await asyncio.gather(
            *(client.get(f"{url.rstrip('/')}/metrics") for _, url in self.replicas),
            return_exceptions=True,
        )
        now = time.time()
        for (name, _), answer in zip(self.replicas, answers, strict=True):
            if isinstance(answer, BaseException) or answer.status_code != 200:
                continue
            try:
                metrics = parse_metrics(answer.text)
            except MetricsParseError:
                continue
            if metrics is not None:
                self.samples.append(
                    ReplicaSample(now, name, metrics.waiting, metrics.running, metrics.kv_usage)
                )


def target_sampler(
    target: str, admin_key: str | None = None, interval_s: float = 0.5
) -> ReplicaSampler:
    """A sampler for the URL `target`: its /admin/replicas when it is a Turnout gateway, else
    its own /metrics as one replica named host:port (the gateway's naming)."""
    base = target.rstrip("/").removesuffix("/v1")
    return ReplicaSampler(
        admin_url=base,
        replicas=[(urlsplit(base).netloc, base)],
        admin_key=admin_key,
        interval_s=interval_s,
    )


async def sampled_run(
    url: str,
    schedule: Schedule,
    sampler: ReplicaSampler,
    *,
    api_key: str | None = None,
    progress: ProgressSink | None = None,
    stop: asyncio.Event | None = None,
) -> RunResult:
    """run_schedule against `url` while `sampler` samples beside it; the samples stay in
    `sampler.samples`. Sampling never fails the run: it only logs what went wrong."""
    async with sampler:
        task = asyncio.create_task(sampler.run())
        try:
            return await run_schedule(url, schedule, api_key=api_key, progress=progress, stop=stop)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def write_samples(samples: Sequence[ReplicaSample], path: Path) -> None:
    with path.open("wb") as sink:
        for sample in samples:
            sink.write(orjson.dumps(sample.to_dict()) + b"\n")


def read_samples(path: Path) -> list[ReplicaSample]:
    if not path.exists():
        return []
    with path.open("rb") as source:
        return [ReplicaSample(**orjson.loads(line)) for line in source if line.strip()]


# Counters read once after a run (vLLM names): what explains a difference between fleets.
_COUNTERS = {
    "vllm:prefix_cache_queries_total": "prefix_cache_queries",
    "vllm:prefix_cache_hits_total": "prefix_cache_hits",
    "vllm:num_preemptions_total": "preemptions",
    "vllm:prompt_tokens_total": "prompt_tokens",
}


def engine_counters(replicas: Sequence[tuple[str, str]], timeout_s: float = 2.0) -> dict[str, Any]:
    """Totals over the replicas of vLLM's prefix-cache and preemption counters."""
    totals: dict[str, float] = {}
    with httpx.Client(timeout=timeout_s) as client:
        for _, url in replicas:
            try:
                text = client.get(f"{url.rstrip('/')}/metrics").text
                families = list(text_string_to_metric_families(text))
            except (httpx.HTTPError, ValueError):
                continue
            for family in families:
                for sample in family.samples:
                    key = _COUNTERS.get(sample.name)
                    if key is not None:
                        totals[key] = totals.get(key, 0.0) + float(sample.value)
    queries = totals.get("prefix_cache_queries", 0.0)
    if queries > 0:
        totals["prefix_cache_hit_rate"] = totals.get("prefix_cache_hits", 0.0) / queries
    return totals
