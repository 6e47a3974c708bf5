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
  `base` (what was sent since waits for the next step).

Before its first drop a replica gets no credit (the count whole, as `least_work` had it).
"""

from collections.abc import Sequence

from routers.types import ReplicaView

# Weight of each new sample in the moving averages of the drain rate.
ALPHA = 0.1

# Per replica: [seen, start, base, tokens, seconds]: the count at the last look, when the
# period began, tokens queued then, and the averages of drained tokens and of their seconds.
_SEEN, _START, _BASE, _TOKENS, _SECONDS = range(5)


class PrefillProgress:
    """What is left of each replica's queued prefill (see the module docstring)."""

    def __init__(self, alpha: float = ALPHA) -> None:
        if not 0 < alpha <= 1:
            raise ValueError("alpha must be in (0, 1]")
        self._alpha = alpha
        self._state: dict[str, list[float]] = {}

    def queued(self, candidates: Sequence[ReplicaView], now: float | None) -> list[float]:
        """Each candidate's queued prefill tokens left; the pool's counts when `now` is None."""
        if now is None:
            return [float(v.awaiting_prompt_tokens) for v in candidates]
        get, alpha = self._state.get, self._alpha
        left: list[float] = []
        append = left.append
        for view in candidates:
            count = view.awaiting_prompt_tokens
            s = get(view.id)
            if s is None:
                self._state[view.id] = [count, now, count, 0.0, 0.0]
                append(count)
                continue
            seen = s[_SEEN]
            if count != seen:
                if count < seen:  # first bytes came back: a sample, and a new period
                    elapsed = now - s[_START]
                    if elapsed > 0:
                        s[_TOKENS] += alpha * (seen - count - s[_TOKENS])
                        s[_SECONDS] += alpha * (elapsed - s[_SECONDS])
                    s[_START], s[_BASE] = now, count
                elif not seen:  # a queue began that this strategy did not send
                    s[_START], s[_BASE] = now, count
                s[_SEEN] = count
            if count and s[_SECONDS] > 0:
                done = (now - s[_START]) * s[_TOKENS] / s[_SECONDS]
                base = s[_BASE]
                append(count - (done if done < base else base))
            else:
                append(count)
        return left

    def sent(self, replica_id: str, tokens: int, now: float | None) -> None:
        """A prompt of `tokens` was routed to `replica_id` (the pool counts it from now)."""
        s = self._state.get(replica_id)
        if s is None or now is None:
            return
        if not s[_SEEN]:
            s[_START], s[_BASE] = now, tokens
        s[_SEEN] += tokens

    def rate(self, replica_id: str) -> float | None:
        """The learned drain rate of `replica_id` in tokens a second, None before a sample."""
        s = self._state.get(replica_id)
        return s[_TOKENS] / s[_SECONDS] if s is not None and s[_SECONDS] > 0 else None

    def drop(self, replica_id: str) -> None:
        self._state.pop(replica_id, None)
