"""Lowest KV-cache usage: the replica with the most free KV memory.

What the Gateway API Inference Extension's kv-cache-utilization scorer reads
(kubernetes-sigs/gateway-api-inference-extension, plugins/scorer/kvcache_utilization.go,
score = 1 - usage). Running out of KV blocks is what makes an engine preempt (recompute a
running request) and stop admitting, so for long contexts and long generations it is the
signal to keep away from; for time to first token it is a weak one, since prefill queues
form well before the cache fills.

A scrape is up to a poll interval old, so each replica's scraped usage is moved by the
change in this gateway's requests in flight there since (sent minus finished), at the
usage a request holds on average across the candidates (scraped usage over scraped
running, fleet-wide); without that, for a whole interval every request would go to the
replica that looked emptiest. Equal usage goes to
fewer requests in flight, then at random. When any candidate's scrape is stale or has no
usage figure, all are compared by in-flight count instead, one scale for all. Among more
than 2 x `sample` candidates, `sample` drawn at random are scored (`routers.signals`).
"""

import random
from collections.abc import Sequence

from routers.signals import SAMPLE, lowest_then, scraped, subset
from routers.types import ReplicaView, RouteRequest, StrategyBase

# Usage a request is assumed to hold when no candidate runs any: 1% of a replica's cache.
DEFAULT_REQUEST_SHARE = 0.01


class KVUsage(StrategyBase):
    name = "kv_usage"
    reads_prefix_hashes = False

    def __init__(self, sample: int = SAMPLE, seed: int | None = None) -> None:
        self.sample = sample
        self._random = random.Random(seed)

    def choose(
        self, request: RouteRequest, candidates: Sequence[ReplicaView]
    ) -> ReplicaView | None:
        if not candidates:
            return None
        candidates = subset(candidates, self._random, self.sample)
        scores = _credited_usage(candidates) if scraped(candidates) else None
        if scores is None:
            scores = [float(v.in_flight) for v in candidates]
        return lowest_then(scores, lambda i: candidates[i].in_flight, candidates, self._random)


def _credited_usage(candidates: Sequence[ReplicaView]) -> list[float] | None:
    metrics = [v.metrics for v in candidates]
    usage = [m.kv_usage for m in metrics if m is not None]
    if len(usage) < len(candidates) or None in usage:  # an engine without a usage figure
        return None
    used = [u for u in usage if u is not None]
    running = sum(m.running for m in metrics if m is not None)
    share = sum(used) / running if running > 0 else DEFAULT_REQUEST_SHARE
    return [
        u + share * (v.in_flight - v.in_flight_at_scrape)
        for v, u in zip(candidates, used, strict=True)
    ]
