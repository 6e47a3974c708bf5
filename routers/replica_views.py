"""Building replicas' views fast, all at once or each when first read.

The pool builds a view per candidate per request: 6 a request in the reference gateway,
100 an arrival in the study. A frozen dataclass's __init__ sets each field through
object.__setattr__; filling a writable twin with the same slots and then giving it
ReplicaView's class (allowed between classes with the same slots) costs a third.
"""

from collections.abc import Iterator, Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any, cast, overload

from routers.types import ReplicaView

if TYPE_CHECKING:
    from routers.pool import Replica

# `view_of` sets every field of ReplicaView: one added there must be added here too.
_FIELDS = (
    "id",
    "url",
    "models",
    "healthy",
    "in_flight",
    "dispatched_since_scrape",
    "finished_since_scrape",
    "in_flight_at_scrape",
    "awaiting_first_byte",
    "awaiting_prompt_tokens",
    "metrics",
    "metrics_age",
    "metrics_stale",
    "others_at_scrape",
    "step_ends_at",
)
if tuple(f.name for f in fields(ReplicaView)) != _FIELDS:
    raise RuntimeError("ReplicaView's fields changed: update routers.replica_views.view_of")


class _Draft:
    """A ReplicaView under construction: the same slots, writable."""

    __slots__ = ReplicaView.__slots__


def view_of(r: "Replica", now: float, stale_after: float) -> ReplicaView:
    scraped_at = r.scraped_at
    age = None if scraped_at is None else now - scraped_at
    metrics = r.metrics
    mark = r.scrape_mark
    view: Any = _Draft()
    view.id = r.id
    view.url = r.url
    view.models = r.models
    view.healthy = r.healthy
    view.in_flight = r.in_flight
    view.dispatched_since_scrape = r.dispatched_total - mark.dispatched
    view.finished_since_scrape = r.finished_total - mark.finished
    view.in_flight_at_scrape = mark.in_flight
    view.awaiting_first_byte = r.awaiting_first_byte
    view.awaiting_prompt_tokens = r.awaiting_prompt_tokens
    view.step_ends_at = r.step_ends_at
    view.metrics = metrics
    view.metrics_age = age
    view.metrics_stale = metrics is None or r.scrape_failed or age is None or age > stale_after
    view.others_at_scrape = r.others_at_scrape
    view.__class__ = ReplicaView
    return cast(ReplicaView, view)


class LazyViews(Sequence[ReplicaView]):
    """Views of `replicas` as of `now`, each built when first read (then kept, so a view
    read twice is the same object). The replicas must not change until the last read."""

    __slots__ = ("_now", "_replicas", "_stale_after", "_views")

    def __init__(self, replicas: "Sequence[Replica]", now: float, stale_after: float) -> None:
        self._replicas = replicas
        self._now = now
        self._stale_after = stale_after
        self._views: list[ReplicaView | None] = [None] * len(replicas)

    def __len__(self) -> int:
        return len(self._replicas)

    @overload
    def __getitem__(self, index: int) -> ReplicaView: ...

    @overload
    def __getitem__(self, index: slice) -> list[ReplicaView]: ...

    def __getitem__(self, index: int | slice) -> ReplicaView | list[ReplicaView]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self._replicas)))]
        view = self._views[index]
        if view is None:
            view = view_of(self._replicas[index], self._now, self._stale_after)
            self._views[index] = view
        return view

    def __iter__(self) -> Iterator[ReplicaView]:
        # Every view is read (round_robin sorts them all): build the missing ones in one go.
        now, stale_after = self._now, self._stale_after
        views = self._views = [
            view_of(r, now, stale_after) if view is None else view
            for view, r in zip(self._views, self._replicas, strict=True)
        ]
        return iter(cast(list[ReplicaView], views))
