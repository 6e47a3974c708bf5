"""Least work ahead: prefill tokens queued on the replica, plus its decode load.

A request's time to first token is mostly the prefill queued ahead of it: engines run
prefill first come, first served, a bounded number of tokens per step. The pool knows the
prompt tokens of this gateway's requests still waiting for their first byte on each replica
(`awaiting_prompt_tokens`), exactly and without scrape lag. The decode load (every running
sequence adds a token and its context reads to each step) is the batch: scraped running +
waiting credited with what was sent since the scrape, or, unless all scrapes are fresh,
this gateway's in-flight count, one scale for all candidates as in `queue_depth`.

    score = queued prefill left + decode_weight * batch

The queued prefill left is `awaiting_prompt_tokens` less what the replica has probably
prefilled since its queue began, at the drain rate learned from its earlier first bytes
(`routers.progress`; the request's `now` is the time). Counting prompts whole until their
first byte, as `progress=False` does, cost 7-18% of TTFT p99 against the study's oracle on
32 replicas (docs/routing.md).

With `phase` (the default), the queued prefill left is at least what the engine step
under way still holds the next prompt back: the learned drain rate x the seconds until it
should end, from when the replica's streams last sent tokens and how long its decode
steps take (`ReplicaView.step_ends_at`). On 32 replicas of chat-mixed at 0.95 that
took the mean gap to the study's oracle over ten seeds from +7.0% to +4.3%
(docs/routing.md, "The step under way, measured").

`decode_weight` is in prompt tokens per sequence in the batch. Per step a decoding sequence
costs about as much as two prompt tokens (one token of compute and its context read), and
a typical prompt waits a step or a few, hence the default of 4: enough to balance decode
load when no prefill is queued, too little to overrule a queue of prompts.

Among more than 2 x `sample` candidates, `sample` of them drawn at random are scored
(`routers.signals`).
"""

import random
from collections.abc import Sequence

from routers.progress import PrefillProgress
from routers.signals import SAMPLE, batch_sizes, lowest, subset
from routers.types import ReplicaView, RouteRequest, StrategyBase


class LeastWork(StrategyBase):
    name = "least_work"
    reads_prefix_hashes = False

    def __init__(
        self,
        decode_weight: float = 4.0,
        progress: bool = True,
        phase: bool = True,
        sample: int = SAMPLE,
        seed: int | None = None,
    ) -> None:
        if decode_weight < 0:
            raise ValueError("decode_weight must be at least 0")
        self.decode_weight = decode_weight
        self.progress = PrefillProgress(phase=phase) if progress else None
        self.sample = sample
        self._random = random.Random(seed)

    def choose(
        self, request: RouteRequest, candidates: Sequence[ReplicaView]
    ) -> ReplicaView | None:
        if not candidates:
            return None
        candidates = subset(candidates, self._random, self.sample)
        weight = self.decode_weight
        progress = self.progress
        if progress is None:
            scores = [
                v.awaiting_prompt_tokens + weight * batch
                for v, batch in zip(candidates, batch_sizes(candidates), strict=True)
            ]
            return lowest(scores, candidates, self._random)
        now = request.now
        scores, at = progress.work(candidates, now, weight)
        choice = candidates[at] if at >= 0 else lowest(scores, candidates, self._random)
        progress.sent(choice.id, request.prompt_tokens_estimate, now)
        return choice

    def on_replica_removed(self, replica_id: str) -> None:
        if self.progress is not None:
            self.progress.drop(replica_id)
