"""Replicas joining, draining and leaving the pool at run time (routers/pool.py)."""

import pytest

from routers import ReplicaView
from routers.pool import Replica
from tests.routers.test_pool import pool_of


def ids(views: list[ReplicaView]) -> list[str]:
    return [v.id for v in views]


def test_a_joining_replica_is_routed_once_healthy_and_its_watchers_hear_it() -> None:
    pool = pool_of("b")
    heard: list[tuple[str, bool]] = []
    available: list[tuple[str, bool]] = []
    pool.watch(lambda rid, present: heard.append((rid, present)))
    pool.set_listener(lambda rid, up: available.append((rid, up)))
    pool.add(Replica(id="a", url="http://a", models=("m",), healthy=False))
    assert heard == [("a", True)] and available == []
    assert [r.id for r in pool] == ["a", "b"]  # kept in id order
    assert ids(pool.candidates("m")) == ["b"]
    pool.mark_up("a")
    assert available == [("a", True)]
    assert ids(pool.candidates("m")) == ["a", "b"]
    with pytest.raises(ValueError, match="already"):
        pool.add(Replica(id="a", url="http://other"))


def test_draining_stops_new_requests_and_resuming_brings_them_back() -> None:
    pool = pool_of("a", "b")
    available: list[tuple[str, bool]] = []
    pool.set_listener(lambda rid, up: available.append((rid, up)))
    pool.drain("a")
    assert ids(pool.candidates("m")) == ["b"]
    assert pool.served_models() == ["m"]  # b still serves it
    pool.drain("b")
    assert pool.served_models() == [] and pool.served_models(healthy_only=False) == ["m"]
    # A health check passing on a drained replica does not put it back in routing.
    pool.mark_down("a", "x")
    pool.mark_up("a")
    assert ids(pool.candidates("m")) == []
    pool.drain("a", False)
    assert ids(pool.candidates("m")) == ["a"]
    assert available == [("a", False), ("b", False), ("a", True)]


def test_a_leaving_replica_stays_until_its_last_request_has_finished() -> None:
    pool = pool_of("a", "b")
    heard: list[tuple[str, bool]] = []
    pool.watch(lambda rid, present: heard.append((rid, present)))
    pool.acquire("a")
    pool.acquire("a")
    assert pool.remove("a") is False
    assert heard == [("a", False)]
    assert ids(pool.candidates("m")) == ["b"] and "a" in pool
    pool.first_byte("a")
    pool.release("a")
    assert "a" in pool
    pool.record_error("a", "http_500", fatal=False)  # the last request may still fail
    pool.release("a", answered=False)
    assert "a" not in pool and [r.id for r in pool] == ["b"]
    # Removing an idle replica drops it at once; removing twice is harmless.
    assert pool.remove("b") is True and len(pool) == 0


def test_a_leaving_replica_can_be_kept() -> None:
    pool = pool_of("a")
    heard: list[tuple[str, bool]] = []
    pool.watch(lambda rid, present: heard.append((rid, present)))
    pool.acquire("a")
    pool.remove("a")
    with pytest.raises(ValueError, match="leaving"):
        pool.drain("a", False)
    pool.keep("a")
    pool.drain("a", False)
    pool.release("a")
    assert "a" in pool and ids(pool.candidates("m")) == ["a"]
    assert heard == [("a", False), ("a", True)]


def test_unwatching_stops_the_calls() -> None:
    pool = pool_of("a")
    heard: list[str] = []
    unwatch = pool.watch(lambda rid, present: heard.append(rid))
    unwatch()
    pool.add(Replica(id="b", url="http://b"))
    assert heard == []
