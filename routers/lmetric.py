"""LMetric: new prefill tokens if routed there, times the replica's current batch size.

From "LMetric: Simple is Better - Multiplication May Be All You Need for LLM Request
Scheduling" (Zhang et al., arXiv 2603.15202, https://arxiv.org/abs/2603.15202): the request
goes to the replica with the lowest product of a KV-cache-aware indicator (the prompt
tokens that would need prefill there) and a load indicator (its current batch size). A
product needs no weight: any constants scale every candidate's score alike, where a sum
`a*P + b*B` needs the ratio a/b tuned.

Read here as llm-d's port reads it (llm-d/llm-d-router PR 2351, scorer/lmetric/lmetric.go):
- P: this request's prompt tokens minus those the replica probably has cached, from an
  approximate prefix index of what this strategy sent where (`routers.prefix_index`);
  at least one token, since an engine always computes the last one.
- B: the batch (`routers.signals.batch_sizes`: scraped running + waiting credited with
  what was sent since the scrape, or this gateway's in-flight counts unless every scrape is
  fresh), plus one so that an idle replica's prefix still counts.
Ties go to the smaller P, then at random. `pending_prefill=True` adds the uncached prefill
queued on the replica to P (the variant agentic-kvc calls LMetric; see docs/routing.md).
Among more than 2 x `sample` candidates, `sample` drawn at random and those holding the
prompt's prefix are scored (`routers.signals`).
"""

from collections.abc import Sequence

from routers.pending import PendingPrefill
from routers.prefix_index import BLOCK_TOKENS, MAX_ENTRIES
from routers.prefix_tracking import PrefixTracking
from routers.signals import SAMPLE, batch_sizes, lowest, lowest_then, subset, with_holders
from routers.types import Outcome, ReplicaView, RouteRequest


class LMetric(PrefixTracking):
    name = "lmetric"

    def __init__(
        self,
        block_tokens: int = BLOCK_TOKENS,
        index_entries: int = MAX_ENTRIES,
        pending_prefill: bool = False,
        sample: int = SAMPLE,
        seed: int | None = None,
    ) -> None:
        self.pending_prefill = pending_prefill
        self.pending = PendingPrefill()
        super().__init__(block_tokens, index_entries, sample, seed)

    def choose(
        self, request: RouteRequest, candidates: Sequence[ReplicaView]
    ) -> ReplicaView | None:
        if not candidates:
            return None
        tokens = request.prompt_tokens_estimate
        if tokens < 1:  # (the builtin `max` parses keyword arguments: 3% of a choice)
            tokens = 1
        hashes = request.prefix_hashes
        cached = self.index.cached(hashes, tokens) if hashes else {}
        if len(candidates) > 2 * self.sample > 0:
            sampled = subset(candidates, self._random, self.sample)
            candidates = with_holders(candidates, sampled, cached, self._positions)
        batches = batch_sizes(candidates)
        if not cached and not self.pending_prefill:  # most prompts: the same P everywhere
            whole = float(tokens)
            scores = [whole * (b + 1.0) for b in batches]
            choice = lowest(scores, candidates, self._random)
        else:
            get = cached.get
            new: list[float] = [max(tokens - get(v.id, 0), 1) for v in candidates]
            if self.pending_prefill:
                share = self.pending.share.get
                new = [
                    n + v.awaiting_prompt_tokens * share(v.id, 1.0)
                    for v, n in zip(candidates, new, strict=True)
                ]
            # Equal lengths by construction; zip's keyword argument costs 0.3 µs here.
            scores = [n * (b + 1.0) for n, b in zip(new, batches)]  # noqa: B905
            choice = lowest_then(scores, new.__getitem__, candidates, self._random)
        if hashes:
            self.index.insert(choice.id, hashes, tokens)
        if self.pending_prefill:
            uncached = tokens - cached.get(choice.id, 0)
            self.pending.sent(request.request_id, choice.id, uncached, tokens)
        return choice

    def on_request_finished(self, request: RouteRequest, outcome: Outcome) -> None:
        self.pending.finished(request.request_id)

    def on_replica_removed(self, replica_id: str) -> None:
        super().on_replica_removed(replica_id)
        self.pending.drop(replica_id)
