"""The gateway's own Prometheus metrics, in a per-app registry.

Per-request series are updated on the hot path through cached label children; the
per-replica gauges (in-flight, health, scrape age) are read from the pool at scrape
time instead, so they cost nothing per request and can never drift.

Series of a replica that has left the pool (removed, or gone from discovery) are shown by
one more /metrics and then dropped: a gateway whose replicas come and go (every rollout
brings new pod names) would otherwise keep every name it ever routed to.

With several workers (`shared_dir` set: prometheus_client's multiprocess mode, whose
PROMETHEUS_MULTIPROC_DIR it is) the counters and histograms land in files there, and
/metrics on any worker adds up every worker's; the per-replica gauges come from
gateway/shared_view.py. Series in those files cannot be dropped one by one: there, a
departed replica's counters stay until the workers restart.
"""

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from gateway.shared_view import SharedPoolCollector
from routers.pool import ReplicaPool

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# LLM requests last from milliseconds (embeddings) to minutes (long generations).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class _PoolCollector(Collector):
    def __init__(self, pool: ReplicaPool[Any], clock: Callable[[], float]) -> None:
        self._pool = pool
        self._clock = clock

    def collect(self) -> Iterable[Metric]:
        in_flight = GaugeMetricFamily(
            "turnout_in_flight", "Requests open on the replica.", labels=["replica"]
        )
        healthy = GaugeMetricFamily(
            "turnout_replica_healthy",
            "1 if the replica takes traffic, else 0.",
            labels=["replica"],
        )
        age = GaugeMetricFamily(
            "turnout_replica_metrics_age_seconds",
            "Seconds since the replica's /metrics was last scraped.",
            labels=["replica"],
        )
        now = self._clock()
        for replica in self._pool:
            in_flight.add_metric([replica.id], replica.in_flight)
            healthy.add_metric([replica.id], 1.0 if replica.healthy else 0.0)
            if replica.scraped_at is not None:
                age.add_metric([replica.id], max(0.0, now - replica.scraped_at))
        return [in_flight, healthy, age]


class Telemetry:
    def __init__(
        self,
        pool: ReplicaPool[Any],
        clock: Callable[[], float] = time.monotonic,
        shared_dir: Path | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "turnout_requests",
            "Requests answered, by model, replica, strategy and status.",
            ["model", "replica", "strategy", "status"],
            registry=self.registry,
        )
        self._ttfb = Histogram(
            "turnout_time_to_first_byte_seconds",
            "Time from the request's arrival to the first response byte sent back.",
            ["model", "replica"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._duration = Histogram(
            "turnout_request_duration_seconds",
            "Time from the request's arrival to its last response byte.",
            ["model", "replica"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._retries = Counter(
            "turnout_retries",
            "Requests retried on another replica.",
            ["model"],
            registry=self.registry,
        )
        self._upstream_errors = Counter(
            "turnout_upstream_errors",
            "Failures talking to a replica, by kind.",
            ["replica", "kind"],
            registry=self.registry,
        )
        self._key_requests = Counter(
            "turnout_key_requests",
            "Requests answered per client key name (when keys are configured), by status.",
            ["key", "status"],
            registry=self.registry,
        )
        self._rate_limited = Counter(
            "turnout_rate_limited",
            "Requests refused with 429, by client key name and limit (rate, concurrency, global).",
            ["key", "limit"],
            registry=self.registry,
        )
        self._client_cuts = Counter(
            "turnout_client_cuts",
            "Client connections the gateway cut or refused, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self._pool = pool
        # What /metrics shows: this registry, or every worker's files added up.
        self._exposed = self.registry
        self._shared = shared_dir is not None
        if shared_dir is None:
            self.registry.register(_PoolCollector(pool, clock))
        else:
            self._exposed = CollectorRegistry()
            MultiProcessCollector(self._exposed, path=str(shared_dir))  # type: ignore[no-untyped-call]
            self._exposed.register(SharedPoolCollector(pool, shared_dir, os.getpid(), clock))
        # Label lookups take a lock and hash the values: cache the children.
        self._request_children: dict[tuple[str, str, str, int], Counter] = {}
        self._latency_children: dict[tuple[str, str], tuple[Histogram, Histogram]] = {}
        self._key_children: dict[tuple[str, int], Counter] = {}
        self._error_children: dict[tuple[str, str], Counter] = {}

    def observe_request(
        self,
        model: str,
        replica: str,
        strategy: str,
        status: int,
        ttfb: float | None,
        duration: float,
    ) -> None:
        key = (model, replica, strategy, status)
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._requests.labels(model, replica, strategy, str(status))
            self._request_children[key] = counter
        counter.inc()
        if replica == "none":
            return
        pair = self._latency_children.get((model, replica))
        if pair is None:
            pair = (self._ttfb.labels(model, replica), self._duration.labels(model, replica))
            self._latency_children[(model, replica)] = pair
        if ttfb is not None:
            pair[0].observe(ttfb)
        pair[1].observe(duration)

    def observe_key_request(self, key: str, status: int) -> None:
        counter = self._key_children.get((key, status))
        if counter is None:
            counter = self._key_requests.labels(key, str(status))
            self._key_children[(key, status)] = counter
        counter.inc()

    def observe_rate_limited(self, key: str, limit: str) -> None:
        self._rate_limited.labels(key, limit).inc()

    def observe_client_cut(self, reason: str) -> None:
        self._client_cuts.labels(reason).inc()

    def observe_retry(self, model: str) -> None:
        self._retries.labels(model).inc()

    def observe_upstream_error(self, replica: str, kind: str) -> None:
        counter = self._error_children.get((replica, kind))
        if counter is None:
            counter = self._upstream_errors.labels(replica, kind)
            self._error_children[(replica, kind)] = counter
        counter.inc()

    def render(self) -> bytes:
        text = generate_latest(self._exposed)
        if not self._shared:
            self._forget_departed()
        return text

    def _forget_departed(self) -> None:
        """Drop the series of replicas no longer in the pool (after showing them once)."""
        gone = {key[1] for key in self._request_children if key[1] not in self._pool}
        gone |= {key[0] for key in self._error_children if key[0] not in self._pool}
        gone.discard("none")
        if not gone:
            return
        for key in [k for k in self._request_children if k[1] in gone]:
            model, replica, strategy, status = key
            self._requests.remove(model, replica, strategy, str(status))
            del self._request_children[key]
        for pair in [k for k in self._latency_children if k[1] in gone]:
            self._ttfb.remove(*pair)
            self._duration.remove(*pair)
            del self._latency_children[pair]
        for labels in [k for k in self._error_children if k[0] in gone]:
            self._upstream_errors.remove(*labels)
            del self._error_children[labels]
