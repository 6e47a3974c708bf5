"""Prefill queued on each replica, less what it has probably done since the queue began.

The pool counts the prompt tokens of this gateway's requests awaiting their first byte on
each replica (`ReplicaView.awaiting_prompt_tokens`), exactly, but counts a prompt whole
until its first byte comes back. An engine prefills what is queued step after step, so a
queue that began 100 ms ago is partly done: a replica whose 4,000 queued tokens are nearly
through its current step is a better place for the next prompt than one that has just
begun 1,000. With 32 replicas, most of them idle or nearly so, that is what separates them
(docs/routing.md, the study).

Per replica, from the counts alone (no clock of its own: the time comes with the request):

- a period begins when its queue goes from empty to not, or when first bytes come back
  (the count drops) and some of the queue is left: what is then queued (`base`) is what
  the engine works on next;
- its drain rate is learned from those drops: tokens whose first byte came back over the
  seconds since the period began, moving averages of each (so long prefills weigh more),
  dated at the moment the drop is seen (late, at light traffic: a lower rate, less credit);
- its queued work now is the count minus rate x seconds since the period began, at most
  `base` (what was sent since waits for the next step);
- times the uncached share of the queue, for a strategy that tells `sent` how much of each
  prompt it expects cached there (`prefix_least_work`): prompts others sent count as
  uncached, the share stays as first bytes come back (what leaves takes its part), and it
  starts afresh when the queue empties. Kept here rather than request by request (as
  `routers.pending` does), it needs nothing when a request finishes: that bookkeeping was
  13% of a `prefix_least_work` choice.

Before its first drop a replica gets no credit (the count whole, as `least_work` had it).

With `phase`, a replica with requests open has at least the step under way left: rate x
the seconds until it should end (`ReplicaView.step_ends_at`, from its streams' chunks:
`ReplicaPool.tokens`). The credit above covers a prefill under way; this covers decode
steps, which the counts do not see.
"""

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from routers.signals import batch_sizes
from routers.types import ReplicaView

# Weight of each new sample in the moving averages of the drain rate.
ALPHA = 0.1


class _Queue:
    """One replica's queue as last seen (slots: reading one costs less than a list item by
    a named index, 4% of a choice)."""

    __slots__ = ("base", "rate", "seconds", "seen", "share", "start", "tokens")

    def __init__(self, count: int, now: float) -> None:
        self.seen = count  # the count at the last look
        self.start = now  # when the period began
        self.base = count  # tokens queued then
        self.tokens = 0.0  # moving average of the tokens drained by a drop
        self.seconds = 0.0  # and of the seconds they took
        self.rate = 0.0  # their ratio, 0 before a sample
        self.share = 1.0  # the uncached share of the count


_INF = float("inf")

# Default of `work`: nothing cached known (a read-only view of an empty dict).
_NONE_CACHED: Mapping[str, int] = MappingProxyType({})


class PrefillProgress:
    """What is left of each replica's queued prefill (see the module docstring)."""

    def __init__(self, alpha: float = ALPHA, phase: bool = True) -> None:
        if not 0 < alpha <= 1:
            raise ValueError("alpha must be in (0, 1]")
        self._alpha = alpha
        self._phase = phase
        self._state: dict[str, _Queue] = {}

    def queued(self, candidates: Sequence[ReplicaView], now: float | None) -> list[float]:
        """Each candidate's queued prefill tokens left; the pool's counts when `now` is None."""
        return self.work(candidates, now, 0.0)[0]

    def work(
        self,
        candidates: Sequence[ReplicaView],
        now: float | None,
        decode_weight: float,
        cached: Mapping[str, int] = _NONE_CACHED,
        cache_weight: float = 0.0,
    ) -> tuple[list[float], int]:
        """Each candidate's work ahead of a new prompt, in prompt tokens: its queued prefill
        left x the uncached share of it - `cache_weight` x this prompt's `cached` tokens
        there + `decode_weight` x its batch (`routers.signals.batch_sizes`, computed here in
        the same pass over the candidates: one pass is a third cheaper); and the position of
        the lowest, -1 when several are equal lowest."""
        state, alpha, phase = self._state, self._alpha, self._phase
        caches = bool(cached)
        cached_of = cached.get
        if now is None:
            return _lowest(self._counts(candidates, decode_weight, cached, cache_weight))
        for fresh in (True, False):  # one scale for all: in-flight alone unless all fresh
            scores = [0.0] * len(candidates)
            best, at, i = _INF, -1, 0
            for view in candidates:
                if fresh:
                    if view.metrics_stale:
                        break
                    batch = view.others_at_scrape + view.in_flight  # float first: faster
                else:
                    batch = view.in_flight
                count = view.awaiting_prompt_tokens
                try:  # cheaper than a bound `state.get` when, as almost always, it is there
                    s = state[view.id]
                except KeyError:
                    state[view.id] = _Queue(count, now)
                    left: float = count
                else:
                    if count != s.seen:
                        seen = s.seen
                        if count < seen:  # first bytes came back: a sample, a new period
                            elapsed = now - s.start
                            if elapsed > 0:
                                s.tokens += alpha * (seen - count - s.tokens)
                                s.seconds += alpha * (elapsed - s.seconds)
                                s.rate = s.tokens / s.seconds
                            s.start, s.base = now, count  # the share stays
                        else:  # prompts this strategy did not send: counted uncached
                            if not seen:  # a queue began
                                s.start, s.base = now, count
                            s.share = (s.share * seen + count - seen) / count
                        s.seen = count
                    rate = s.rate
                    if rate > 0.0 and count > 0:
                        done = (now - s.start) * rate
                        base = s.base
                        left = count - (done if done < base else base)
                    else:
                        left = count
                    left *= s.share
                    if phase:  # the step under way holds the next prompt back until it ends
                        ends = view.step_ends_at
                        if ends > now:
                            ends = (ends - now) * rate
                            if ends > left:
                                left = ends
                if caches:
                    left -= cache_weight * cached_of(view.id, 0)
                score = left + decode_weight * batch
                scores[i] = score
                # The arg-min in the same pass: three calls (min, count, index) cost more.
                if score < best:
                    best, at = score, i
                elif score == best:
                    at = -1
                i += 1  # noqa: SIM113 (enumerate costs 1,000 instructions more a choice)
            else:
                return scores, at
        return scores, at

    @staticmethod
    def _counts(
        candidates: Sequence[ReplicaView],
        decode_weight: float,
        cached: Mapping[str, int],
        cache_weight: float,
    ) -> list[float]:
        """`work` without a time: the pool's counts whole."""
        batches = batch_sizes(candidates)
        return [
            view.awaiting_prompt_tokens
            - cache_weight * cached.get(view.id, 0)
            + decode_weight * batch
            for view, batch in zip(candidates, batches, strict=True)
        ]

    def sent(
        self, replica_id: str, tokens: int, now: float | None, uncached: int | None = None
    ) -> None:
        """A prompt of `tokens` was routed to `replica_id` (the pool counts it from now),
        `uncached` of them probably not cached there (None: all)."""
        s = self._state.get(replica_id)
        if s is None or now is None or tokens <= 0:
            return
        seen = s.seen
        if not seen:
            s.start, s.base = now, tokens
        s.seen = total = seen + tokens
        share = s.share
        if uncached is None:
            if share == 1.0:  # all uncached, and so is what is queued
                return
            uncached = tokens
        s.share = (share * seen + uncached) / total

    def rate(self, replica_id: str) -> float | None:
        """The learned drain rate of `replica_id` in tokens a second, None before a sample."""
        s = self._state.get(replica_id)
        return s.rate if s is not None and s.rate else None

    def drop(self, replica_id: str) -> None:
        self._state.pop(replica_id, None)


def _lowest(scores: list[float]) -> tuple[list[float], int]:
    """`scores` and the position of the lowest, -1 when several are equal lowest."""
    best = min(scores, default=0.0)
    return scores, scores.index(best) if scores.count(best) == 1 else -1
