"""Least work ahead, counting what is not cached: `least_work` made prefix-aware.

A request's time to first token on a replica is, to first order, the prefill work queued
there plus its own, over the replica's prefill rate, and only tokens the replica does not
have cached cost prefill. So, in prompt tokens:

    score = queued uncached prefill - cache_weight * this prompt's cached tokens
            + decode_weight * batch

- this prompt's cached tokens: what the replica probably holds of it, from an approximate
  index of what this strategy sent where (`routers.prefix_index`);
- queued uncached prefill: the pool's exact, lag-free count of prompt tokens awaiting
  their first byte there (`awaiting_prompt_tokens`), less what the replica has probably
  prefilled since its queue began, times the uncached share of what is queued, from what
  this strategy estimated for each prompt it sent there (both `routers.progress`);
- batch: as in `least_work` (this gateway's in-flight requests plus what the last fresh
  scrape shows of other senders', `routers.signals.batch_sizes`).

With `cache_weight` 1 this is the greedy choice of the lowest estimated time to first
token, and agentic-kvc measured that sum without the decode term ("LPWL") ahead of LMetric
and of a tuned affinity policy (gitea.gahow.org/gahow/agentic-kvc,
analysis/lpwl_5policy_600s.md). Greedy is short-sighted about the cache, though: sending a
prefix to a replica where it is cold costs its prefill now and, once caches are full,
evicts as much of another prefix, which someone pays for later; and while caches warm up,
queues are long and greedy copies prefixes to every replica, so the fleet's caches hold
less. Counting a cached token as worth 4 queued ones keeps a prefix where it is until the
queue there is four times what it saves (on the shared-prefix evidence in docs/routing.md:
TTFT p99 0.14 of round_robin's with weight 1, 0.06 with 2, 0.04 with 4 or 8; on traffic
with little sharing the weight makes no difference).

Set `prefix_caching=False` for engines that run without prefix caching: it is then
`least_work`. `uncached_share=False` counts queued prompts whole, as `least_work` does (on
the shared-prefix evidence of docs/routing.md, TTFT p99 0.069 of round_robin's against
0.044 with the share). `phase=True` adds `least_work`'s step phase: over seeds of the
study it gains 1 to 3 points on 32 replicas, costs 1.3 on the reference fleet's chat-mixed
at 0.85, and costs about 3,000 instructions a choice (8% more), which brings this
strategy to about its 5 µs budget: off by default (docs/routing.md). Among more than
2 x `sample` candidates, `sample` drawn at random and those
holding the prompt's prefix are scored (`routers.signals`).
"""

from collections.abc import Sequence

from routers.prefix_index import BLOCK_TOKENS, MAX_ENTRIES
from routers.prefix_tracking import PrefixTracking
from routers.progress import PrefillProgress
from routers.signals import SAMPLE, lowest_then, subset, with_holders
from routers.types import ReplicaView, RouteRequest


class PrefixLeastWork(PrefixTracking):
    name = "prefix_least_work"

    def __init__(
        self,
        decode_weight: float = 4.0,
        block_tokens: int = BLOCK_TOKENS,
        index_entries: int = MAX_ENTRIES,
        prefix_caching: bool = True,
        cache_weight: float = 4.0,
        sample: int = SAMPLE,
        seed: int | None = None,
        uncached_share: bool = True,
        phase: bool = False,
    ) -> None:
        if decode_weight < 0:
            raise ValueError("decode_weight must be at least 0")
        self.decode_weight = decode_weight
        self.prefix_caching = prefix_caching
        self.uncached_share = uncached_share and prefix_caching
        self.cache_weight = cache_weight
        self.progress = PrefillProgress(phase=phase)
        super().__init__(block_tokens, index_entries, sample, seed)

    def choose(
        self, request: RouteRequest, candidates: Sequence[ReplicaView]
    ) -> ReplicaView | None:
        if not candidates:
            return None
        tokens = request.prompt_tokens_estimate
        hashes = request.prefix_hashes if self.prefix_caching else ()
        cached = self.index.cached(hashes, tokens) if hashes else {}
        if len(candidates) > 2 * self.sample > 0:
            sampled = subset(candidates, self._random, self.sample)
            candidates = with_holders(candidates, sampled, cached, self._positions)
        now = request.now
        scores, at = self.progress.work(
            candidates, now, self.decode_weight, cached, self.cache_weight
        )
        if at >= 0:
            choice = candidates[at]
        else:  # among equal scores, the replica with less queued (it had the cache to match)
            choice = lowest_then(
                scores, lambda i: candidates[i].awaiting_prompt_tokens, candidates, self._random
            )
        replica = choice.id
        if hashes:
            self.index.insert(replica, hashes, tokens)
        if self.uncached_share:
            uncached = tokens - cached[replica] if replica in cached else tokens
            self.progress.sent(replica, tokens, now, uncached)
        else:
            self.progress.sent(replica, tokens, now)
        return choice

    def on_replica_removed(self, replica_id: str) -> None:
        super().on_replica_removed(replica_id)
        self.progress.drop(replica_id)
