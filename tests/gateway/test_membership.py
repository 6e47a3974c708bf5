"""Membership.sync: a discovery's whole view applied, other sources' replicas untouched."""

from typing import Any

import pytest

from gateway.errors import Conflict
from gateway.membership import Membership
from gateway.replicas_file import ReplicaEntry
from gateway.upstream import Upstream
from routers.pool import ReplicaPool


class Health:
    """Passes every replica's first check at once."""

    def __init__(self, pool: ReplicaPool[Upstream]) -> None:
        self.pool = pool
        self.checked: list[str] = []

    async def check_once(self, replica_id: str) -> bool:
        self.checked.append(replica_id)
        self.pool.mark_up(replica_id)
        return True


class Log:
    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def make() -> tuple[ReplicaPool[Upstream], Membership, Health]:
    pool = ReplicaPool([Upstream(id="static", url="http://static:1", models=("m",))])
    health = Health(pool)
    return pool, Membership(pool, health, Log()), health


def entry(name: str, port: int) -> ReplicaEntry:
    return ReplicaEntry(name=name, url=f"http://{name}:{port}")


async def test_sync_adds_and_removes_only_its_own_replicas() -> None:
    pool, members, health = make()
    await members.add(entry("by-hand", 1), "admin")
    await members.sync("k8s", [entry("pod-a", 1), entry("pod-b", 1)])
    assert [r.id for r in pool] == ["by-hand", "pod-a", "pod-b", "static"]
    assert health.checked == ["by-hand", "pod-a", "pod-b"]
    assert {r.id: members.source_of(r.id) for r in pool} == {
        "by-hand": "admin",
        "pod-a": "k8s",
        "pod-b": "k8s",
        "static": "config",
    }
    # The same view again changes nothing; an empty one takes out only k8s's replicas.
    await members.sync("k8s", [entry("pod-a", 1), entry("pod-b", 1)])
    assert health.checked == ["by-hand", "pod-a", "pod-b"]
    pool.acquire("pod-b")
    await members.sync("k8s", [])
    assert [r.id for r in pool] == ["by-hand", "pod-b", "static"]
    assert pool.get("pod-b").leaving
    # A name another source holds is skipped, not taken over.
    await members.sync("k8s", [entry("static", 9)])
    assert pool.get("static").url == "http://static:1"
    # A pod back under its name while its old self still finishes is taken back.
    await members.sync("k8s", [entry("pod-b", 1)])
    assert not pool.get("pod-b").leaving and not pool.get("pod-b").draining


async def test_add_refuses_a_name_or_url_of_another_replica() -> None:
    _, members, _ = make()
    with pytest.raises(Conflict, match="exists with URL"):
        await members.add(ReplicaEntry(name="static", url="http://other:1"), "admin")
    with pytest.raises(Conflict, match="already"):
        await members.add(ReplicaEntry(name="other", url="http://static:1"), "admin")
    replica, new = await members.add(ReplicaEntry(name="static", url="http://static:1"), "admin")
    assert replica.id == "static" and not new


async def test_add_refuses_an_alias_that_would_make_one_name_mean_two_models() -> None:
    pool, members, _ = make()
    hides = (("llama-8b", "llama3.1:8b"),)
    await members.add(ReplicaEntry(name="ollama", url="http://ollama:1", aliases=hides), "admin")
    # Another replica may not publish the name "ollama" serves its model under ...
    clashing = (("llama3.1:8b", "Meta-Llama-3.1-8B"),)
    with pytest.raises(Conflict, match="one name must mean one model") as caught:
        await members.add(ReplicaEntry(name="v", url="http://v:1", aliases=clashing), "admin")
    assert caught.value.param == "aliases" and "v" not in pool
    # ... but the same alias for the same own name is a second replica of that model.
    await members.add(ReplicaEntry(name="ollama-2", url="http://o2:1", aliases=hides), "admin")
    assert "ollama-2" in pool
