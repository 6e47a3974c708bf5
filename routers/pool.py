"""The replica pool: every replica's live state, and read-only views of it for strategies.

Pure state on an injected clock, so that one routing model serves two clocks: the gateway
drives it in real time (its lifespan owns one pool per app), and the simulator's virtual-time
runner drives the very same class with a virtual clock. The proxy acquires and releases
in-flight slots; the metrics poller records scrapes; health checks and passive failures take
replicas out (with exponential backoff) and bring them back.
"""

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, TypeVar

from routers import Metrics, ReplicaView
from routers.replica_views import LazyViews, view_of
from routers.types import others_at_scrape


class ScrapeMark(NamedTuple):
    """A replica's sent and finished counts, and its requests in flight, as a scrape began."""

    dispatched: int
    finished: int
    in_flight: int


@dataclass
class Replica:
    id: str
    url: str
    # Public names (what clients ask for), after `aliases`.
    models: tuple[str, ...] = ()
    # Models were given in configuration; otherwise they come from /v1/models.
    models_pinned: bool = False
    # Public model name -> the replica's own name for it (e.g. an Ollama tag).
    aliases: dict[str, str] = field(default_factory=dict)
    # Most requests the server takes at once (one for llama-cpp-python); None: no limit.
    max_in_flight: int | None = None
    max_model_len: dict[str, int] = field(default_factory=dict)
    healthy: bool = True
    # Taken out of routing by an operator or discovery: no new requests, those in flight
    # finish. `leaving`: dropped from the pool once the last of them has finished.
    draining: bool = False
    leaving: bool = False
    in_flight: int = 0
    # In-flight requests still waiting for their first byte, and their estimated prompt
    # tokens: prefill work queued on the replica, as far as this gateway knows.
    awaiting_first_byte: int = 0
    awaiting_prompt_tokens: int = 0
    # Streamed tokens (`ReplicaPool.tokens`): when the replica's last engine step ended
    # (None: no tokens seen yet), the moving average of its decode steps' length (0: none
    # measured yet), and so when the step under way should end (0.0: unknown, as when
    # nothing is in flight); when the last chunk came.
    step_ended_at: float | None = None
    step_seconds: float = 0.0
    step_ends_at: float = 0.0
    tokens_at: float = float("-inf")
    # Requests ever sent and ever finished, and both counts (with those in flight) when the
    # last recorded scrape began: the differences are what the scrape cannot have counted.
    dispatched_total: int = 0
    finished_total: int = 0
    scrape_mark: ScrapeMark = field(default_factory=lambda: ScrapeMark(0, 0, 0))
    metrics: Metrics | None = None
    # Other senders' requests the last scrape showed (`routers.types.others_at_scrape`).
    others_at_scrape: float = 0.0
    scraped_at: float | None = None
    scrape_failed: bool = False
    # Passive 5xx in a row; ejections in a row (drives the backoff).
    consecutive_errors: int = 0
    ejections: int = 0
    retry_at: float = 0.0
    last_error: str = ""

    @property
    def dispatched_since_scrape(self) -> int:
        return self.dispatched_total - self.scrape_mark.dispatched

    @property
    def finished_since_scrape(self) -> int:
        return self.finished_total - self.scrape_mark.finished

    def public_names(self, own_names: Iterable[str]) -> list[str]:
        """The replica's own model names as clients know them."""
        public = {own: name for name, own in self.aliases.items()}
        return [public.get(name, name) for name in own_names]


R = TypeVar("R", bound=Replica)

# A stream's chunks within this of the one before came from the same engine step: engines
# send a step's tokens at once, and a decode step takes several milliseconds on any GPU.
STEP_QUIET_S = 0.002
# A gap between bursts longer than this spans idle time, not one step.
STEP_MAX_S = 1.0
# Weight of each new decode step in `Replica.step_seconds`.
STEP_ALPHA = 0.2


class ReplicaPool(Generic[R]):
    """Replicas by id; generic in the replica type, so that the gateway can keep its own
    per-replica facts (what server it is, how to talk to it) on a subclass of Replica."""

    def __init__(
        self,
        replicas: Iterable[R],
        *,
        stale_after: float = 3.0,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        errors_to_eject: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._replicas = {r.id: r for r in sorted(replicas, key=lambda r: r.id)}
        self._stale_after = stale_after
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._errors_to_eject = errors_to_eject
        self._clock = clock
        self._listener: Callable[[str, bool], None] | None = None
        self._watchers: list[Callable[[str, bool], None]] = []

    def set_listener(self, listener: Callable[[str, bool], None] | None) -> None:
        """Called with (replica id, True) when a replica becomes available to strategies
        (healthy and not draining), False when it stops being (ejected or drained)."""
        self._listener = listener

    def watch(self, watcher: Callable[[str, bool], None]) -> Callable[[], None]:
        """Call `watcher(replica id, True)` when a replica joins the pool (or a leaving one
        is taken back), `(replica id, False)` when one starts leaving; returns the undo."""
        self._watchers.append(watcher)
        return lambda: self._watchers.remove(watcher)

    def __iter__(self) -> Iterator[R]:
        return iter(self._replicas.values())

    def __len__(self) -> int:
        return len(self._replicas)

    def __contains__(self, replica_id: object) -> bool:
        return replica_id in self._replicas

    def get(self, replica_id: str) -> R:
        return self._replicas[replica_id]

    @staticmethod
    def available(r: Replica) -> bool:
        """Whether strategies may route new requests to `r`."""
        return r.healthy and not r.draining

    # -- membership (an operator's admin API, or discovery) --------------------------------

    def add(self, replica: R) -> None:
        """A new replica joins (ids are unique: ValueError for one that is here). It joins
        out of routing unless healthy; the health check brings it in."""
        if replica.id in self._replicas:
            raise ValueError(f"replica {replica.id!r} is already in the pool")
        self._replicas = dict(sorted({**self._replicas, replica.id: replica}.items()))
        self._tell_watchers(replica.id, True)
        if self.available(replica) and self._listener is not None:
            self._listener(replica.id, True)

    def remove(self, replica_id: str) -> bool:
        """Take a replica out: no new requests; it leaves the pool when its last request in
        flight has finished (at once when none is). True if it is gone already."""
        r = self._replicas[replica_id]
        if not r.leaving:
            self._set_draining(r, True)
            r.leaving = True
            self._tell_watchers(replica_id, False)
        return self._drop_if_idle(r)

    def keep(self, replica_id: str) -> None:
        """Take back a replica that is leaving (it comes back draining; `drain` undoes)."""
        r = self._replicas[replica_id]
        if r.leaving:
            r.leaving = False
            self._tell_watchers(replica_id, True)

    def drain(self, replica_id: str, draining: bool = True) -> None:
        """Stop (or resume) routing new requests to a replica that stays in the pool."""
        r = self._replicas[replica_id]
        if r.leaving and not draining:
            raise ValueError(f"replica {replica_id!r} is leaving the pool")
        self._set_draining(r, draining)

    def _set_draining(self, r: Replica, draining: bool) -> None:
        before = self.available(r)
        r.draining = draining
        after = self.available(r)
        if before != after and self._listener is not None:
            self._listener(r.id, after)

    def _drop_if_idle(self, r: Replica) -> bool:
        if r.leaving and r.in_flight == 0 and self._replicas.get(r.id) is r:
            self._replicas = {k: v for k, v in self._replicas.items() if k != r.id}
        return r.id not in self._replicas

    def _tell_watchers(self, replica_id: str, present: bool) -> None:
        for watcher in list(self._watchers):
            watcher(replica_id, present)

    # -- what strategies and the API see ---------------------------------------------------

    def served_models(self, *, healthy_only: bool = True) -> list[str]:
        return sorted(
            {
                m
                for r in self._replicas.values()
                if self.available(r) or not healthy_only
                for m in r.models
            }
        )

    def candidates(self, model: str, exclude: Iterable[str] = ()) -> list[ReplicaView]:
        """Views of the healthy replicas serving `model`, by id, minus `exclude`."""
        now = self._clock()
        stale_after = self._stale_after
        return [view_of(r, now, stale_after) for r in self._serving(model, exclude)]

    def lazy_candidates(self, model: str) -> LazyViews:
        """`candidates(model)`, each view built (as of now) only when a strategy reads it:
        for a caller that changes nothing before the strategy has chosen (the simulator's
        virtual runner), where a strategy sampling a few of 100 replicas reads only those."""
        return LazyViews(self._serving(model, ()), self._clock(), self._stale_after)

    def _serving(self, model: str, exclude: Iterable[str]) -> list[R]:
        skip = set(exclude)
        return [
            r
            for r in self._replicas.values()
            if r.healthy
            and not r.draining
            and model in r.models
            and r.id not in skip
            # A replica that takes one request at a time (llama-cpp-python) is full.
            and (r.max_in_flight is None or r.in_flight < r.max_in_flight)
        ]

    def view(self, r: Replica, now: float | None = None) -> ReplicaView:
        return view_of(r, self._clock() if now is None else now, self._stale_after)

    # -- the proxy -------------------------------------------------------------------------

    def acquire(self, replica_id: str, prompt_tokens: int = 0) -> None:
        """A request is being sent to the replica."""
        r = self._replicas[replica_id]
        r.in_flight += 1
        r.dispatched_total += 1
        r.awaiting_first_byte += 1
        r.awaiting_prompt_tokens += prompt_tokens

    def tokens(self, replica_id: str) -> None:
        """A chunk of a stream came from the replica, now. Each engine step sends a token to
        every request it runs, so chunks come in bursts, one a step: a chunk after a quiet
        of `STEP_QUIET_S` begins the next step's, and the time from one burst to the next is
        a step's length. It counts in `step_seconds` only as a decode step's: none of this
        gateway's prompts was awaiting its first byte as it ended (call `first_byte` after
        `tokens`), so it prefilled none of them (a prompt's chunks can make steps long
        without any first byte), and it took at most `STEP_MAX_S` (longer, it was idle).
        The step under way should end `step_seconds` after the last burst began
        (`step_ends_at`). Steps shorter than the quiet run together into one burst: no
        sample (and no phase for strategies) there."""
        r = self._replicas[replica_id]
        now = self._clock()
        if now - r.tokens_at >= STEP_QUIET_S:
            ended = r.step_ended_at
            if ended is not None and not r.awaiting_first_byte:
                gap = now - ended
                if gap <= STEP_MAX_S:
                    seconds = r.step_seconds
                    r.step_seconds = (
                        gap if seconds == 0.0 else seconds + STEP_ALPHA * (gap - seconds)
                    )
            r.step_ended_at = now
            if r.step_seconds > 0.0:
                r.step_ends_at = now + r.step_seconds
        r.tokens_at = now

    def first_byte(self, replica_id: str, prompt_tokens: int = 0) -> None:
        """The replica started answering an acquired request (its prefill is done)."""
        r = self._replicas[replica_id]
        r.awaiting_first_byte = max(0, r.awaiting_first_byte - 1)
        r.awaiting_prompt_tokens = max(0, r.awaiting_prompt_tokens - prompt_tokens)

    def release(self, replica_id: str, prompt_tokens: int = 0, *, answered: bool = True) -> None:
        """The request ended; `answered` says whether `first_byte` was called for it."""
        r = self._replicas[replica_id]
        r.in_flight = max(0, r.in_flight - 1)
        r.finished_total += 1
        if not r.in_flight:  # no stream of ours there: its steps are no longer seen
            r.step_ends_at = 0.0
        if not answered:
            self.first_byte(replica_id, prompt_tokens)
        if r.leaving:
            self._drop_if_idle(r)

    def record_success(self, replica_id: str) -> None:
        self._replicas[replica_id].consecutive_errors = 0

    def record_error(self, replica_id: str, reason: str, *, fatal: bool) -> bool:
        """A failure seen on real traffic. `fatal` (cannot connect) ejects at once;
        other errors (5xx) eject after `errors_to_eject` in a row. True if ejected."""
        r = self._replicas[replica_id]
        r.consecutive_errors += 1
        r.last_error = reason
        if fatal or r.consecutive_errors >= self._errors_to_eject:
            return self.mark_down(replica_id, reason)
        return False

    # -- the poller and health checks ------------------------------------------------------

    def scrape_mark(self, replica_id: str) -> ScrapeMark:
        """Call as a scrape begins; hand the result to `record_metrics` when it ends."""
        r = self._replicas[replica_id]
        return ScrapeMark(r.dispatched_total, r.finished_total, r.in_flight)

    def record_metrics(
        self,
        replica_id: str,
        metrics: Metrics,
        at: float | None = None,
        *,
        mark: ScrapeMark | None = None,
    ) -> None:
        """A scrape that began at `mark` (`scrape_mark`; None: just now) read `metrics`.
        Requests sent since the mark may not be in them, so they stay credited: a slow
        scrape cannot invite a herd."""
        r = self._replicas[replica_id]
        r.metrics = metrics
        r.scraped_at = self._clock() if at is None else at
        r.scrape_failed = False
        r.scrape_mark = (
            ScrapeMark(r.dispatched_total, r.finished_total, r.in_flight) if mark is None else mark
        )
        r.others_at_scrape = others_at_scrape(metrics, r.scrape_mark.in_flight)

    def record_scrape_failure(self, replica_id: str) -> None:
        # Keep the old values for /admin, but strategies must treat them as unknown.
        self._replicas[replica_id].scrape_failed = True

    def set_models(
        self, replica_id: str, models: Iterable[str], max_model_len: dict[str, int]
    ) -> None:
        """`models` and `max_model_len` under the replica's own names; kept under their
        public names."""
        r = self._replicas[replica_id]
        if not r.models_pinned:
            r.models = tuple(sorted(r.public_names(models)))
        public = r.public_names(max_model_len)
        r.max_model_len = dict(zip(public, max_model_len.values(), strict=True))

    def due_for_check(self, replica_id: str) -> bool:
        """Healthy replicas are always checked; ejected ones once their backoff ends."""
        r = self._replicas[replica_id]
        return r.healthy or self._clock() >= r.retry_at

    def mark_down(self, replica_id: str, reason: str) -> bool:
        """Eject with exponential backoff. True if the replica was healthy until now."""
        r = self._replicas[replica_id]
        was_healthy = r.healthy
        was_available = self.available(r)
        r.healthy = False
        r.last_error = reason
        r.ejections += 1
        delay = min(self._backoff_base * 2 ** (r.ejections - 1), self._backoff_max)
        r.retry_at = self._clock() + delay
        if was_available and self._listener is not None:
            self._listener(replica_id, False)
        return was_healthy

    def mark_up(self, replica_id: str) -> bool:
        """Bring back. True if the replica was out until now."""
        r = self._replicas[replica_id]
        was_down = not r.healthy
        r.healthy = True
        r.ejections = 0
        r.consecutive_errors = 0
        r.retry_at = 0.0
        if was_down and self.available(r) and self._listener is not None:
            self._listener(replica_id, True)
        return was_down
