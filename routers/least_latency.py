"""Least latency: the replica whose observed time to first byte promises the least wait.

Peak-EWMA as Finagle and tower ship it (tower/src/load/peak_ewma.rs): each replica keeps
a moving average of the latency its answers showed, which jumps to a new peak at once and
decays back gradually; the cost of sending there is that estimate times (in flight + 1).
It needs no scrape and sees what no metric shows: a replica that is slow (a worse GPU, a
noisy neighbour, a throttled clock) is avoided in proportion to how slow it is.

For LLMs the latency that tells a replica's queue is the time to first byte (the total
depends on how long the answer is), which the gateway measures per request and hands to
`on_request_finished` (`Outcome.ttfb_s`). Two things make the raw figure a poor guide:
it arrives only when the request finishes, seconds after the first byte, and it mostly
measures how long the prompt was. So by default (`per_token`) a sample is divided by the
prompt tokens the request had to wait for there (those queued on the replica when it was
sent, plus its own), giving the replica's seconds per prompt token, and the cost of sending
there is that times the work now ahead (queued prompt tokens, plus this prompt, plus 4 per
request in flight, as in `least_work`): `least_work` in seconds, with each replica's own
speed. `per_token=False, peak=True` is tower's peak-EWMA unchanged.

Strategies read no clock, so the average decays per sample: a new sample x moves the
estimate 2 / (`window` + 1) of the way to x, and with `peak` a sample above the estimate
replaces it. A failed request counts as a sample of at least twice the fleet's average
estimate, so a replica that fails fast does not look fast, yet is tried again once the
others are busier. A replica with no sample yet (or back from an ejection) is assumed as
fast as the average of those with one (before any: 30 ms, linkerd's default, or 50 µs a
prompt token). Among more than 2 x `sample` candidates, `sample` drawn at random are
scored (`routers.signals`).
"""

import random
from collections import OrderedDict
from collections.abc import Sequence

from routers.signals import SAMPLE, lowest, subset
from routers.types import Outcome, ReplicaView, RouteRequest, StrategyBase

# linkerd2-proxy's EWMA_DEFAULT_RTT; and a 7B model's prefill on an H100, per token.
DEFAULT_TTFB_S = 0.030
DEFAULT_S_PER_TOKEN = 50e-6
# Prompt tokens one request in flight stands for (its decode load), as in least_work.
DECODE_WEIGHT = 4.0
_TRACKED = 1 << 16


class LeastLatency(StrategyBase):
    name = "least_latency"
    reads_prefix_hashes = False

    def __init__(
        self,
        window: int = 50,
        peak: bool = False,
        per_token: bool = True,
        sample: int = SAMPLE,
        seed: int | None = None,
    ) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.window = window
        self.peak = peak
        self.per_token = per_token
        self.sample = sample
        self._alpha = 2.0 / (window + 1)
        self._estimate: dict[str, float] = {}
        self._total = 0.0  # of the estimates, for the default of a replica never heard of
        # request id -> prompt tokens it waited for (per_token)
        self._work: OrderedDict[str, float] = OrderedDict()
        self._random = random.Random(seed)

    def choose(
        self, request: RouteRequest, candidates: Sequence[ReplicaView]
    ) -> ReplicaView | None:
        if not candidates:
            return None
        candidates = subset(candidates, self._random, self.sample)
        default = self.default_estimate()
        get = self._estimate.get
        if not self.per_token:
            scores = [get(v.id, default) * (v.in_flight + 1) for v in candidates]
            return lowest(scores, candidates, self._random)
        own = request.prompt_tokens_estimate + 1
        scores = [
            get(v.id, default) * (v.awaiting_prompt_tokens + own + DECODE_WEIGHT * v.in_flight)
            for v in candidates
        ]
        choice = lowest(scores, candidates, self._random)
        if request.request_id:
            self._work[request.request_id] = choice.awaiting_prompt_tokens + own
            self._work.move_to_end(request.request_id)
            if len(self._work) > _TRACKED:
                self._work.popitem(last=False)
        return choice

    def on_request_finished(self, request: RouteRequest, outcome: Outcome) -> None:
        work = self._work.pop(request.request_id, None) if self.per_token else 1.0
        if work is None:
            return  # not routed by this strategy (or forgotten): nothing to scale by
        replica = outcome.replica_id
        old = self._estimate.get(replica)
        sample = outcome.ttfb_s
        if not outcome.ok or sample is None:
            sample = max(sample or 0.0, 2.0 * self.default_estimate() * work)
        sample = max(sample, 0.0) / work
        if old is None or (self.peak and sample > old):
            new = sample
        else:
            new = old + self._alpha * (sample - old)
        self._estimate[replica] = new
        self._total += new - (old or 0.0)

    def default_estimate(self) -> float:
        """What a replica never heard of is assumed to take (seconds, per token or not)."""
        if self._estimate:
            return self._total / len(self._estimate)
        return DEFAULT_S_PER_TOKEN if self.per_token else DEFAULT_TTFB_S

    def estimate(self, replica_id: str) -> float | None:
        """The current estimate for a replica, None before its first sample."""
        return self._estimate.get(replica_id)

    def on_replica_added(self, replica_id: str) -> None:
        self._forget(replica_id)  # back from an ejection: what it showed before is moot

    def on_replica_removed(self, replica_id: str) -> None:
        self._forget(replica_id)

    def _forget(self, replica_id: str) -> None:
        old = self._estimate.pop(replica_id, None)
        if old is not None:
            self._total -= old
