"""How much of the prefill queued on each replica is not cached, as far as a strategy knows.

The pool counts the prompt tokens of requests awaiting their first byte on each replica
(`ReplicaView.awaiting_prompt_tokens`), exactly and in real time, but not how much of them
the replica had cached. A prefix-aware strategy knows what it estimated for each request it
routed, and hears when each finishes, so it keeps, per replica, the uncached share of the
prompts it has in flight there; queued uncached work is then the pool's count times that
share. `lmetric` keeps it so (`pending_prefill=True`); `prefix_least_work` keeps the share
of each replica's queue instead, with its prefill progress (`routers.progress`), which
needs no bookkeeping when a request finishes.
"""

# Requests tracked at once; beyond it all are forgotten (missed finishes must not grow the
# state without bound).
MAX_TRACKED = 1 << 16


class PendingPrefill:
    def __init__(self, max_tracked: int = MAX_TRACKED) -> None:
        self._max = max_tracked
        self._requests: dict[str, tuple[str, int, int]] = {}
        # replica -> [uncached, prompt] tokens of its tracked requests (one record: a
        # dictionary operation less per request than two counts)
        self._totals: dict[str, list[int]] = {}
        # replica -> uncached / prompt tokens of its tracked requests (absent: 1)
        self.share: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._requests)

    def sent(self, request_id: str, replica: str, uncached: int, prompt: int) -> None:
        """A request was routed to `replica` with `uncached` of its `prompt` tokens new there."""
        if not request_id or prompt <= 0:
            return
        requests = self._requests
        if request_id in requests:  # the same id again: a retry, or a caller reusing ids
            self.finished(request_id)
        elif len(requests) >= self._max:
            self.clear()  # finishes went missing on a grand scale: start afresh
        requests[request_id] = (replica, uncached, prompt)
        totals = self._totals.get(replica)
        if totals is None:
            self._totals[replica] = [uncached, prompt]
            self.share[replica] = uncached / prompt
            return
        totals[0] += uncached
        totals[1] += prompt
        self.share[replica] = totals[0] / totals[1]

    def finished(self, request_id: str) -> None:
        entry = self._requests.pop(request_id, None)
        if entry is None:
            return
        replica, uncached, prompt = entry
        totals = self._totals[replica]
        totals[1] -= prompt
        if totals[1] <= 0:
            del self._totals[replica], self.share[replica]
            return
        totals[0] -= uncached
        self.share[replica] = totals[0] / totals[1]

    def drop(self, replica: str) -> None:
        """Forget the requests tracked on `replica`."""
        for rid in [rid for rid, entry in self._requests.items() if entry[0] == replica]:
            del self._requests[rid]
        self._totals.pop(replica, None)
        self.share.pop(replica, None)

    def clear(self) -> None:
        self._requests.clear()
        self._totals.clear()
        self.share.clear()
