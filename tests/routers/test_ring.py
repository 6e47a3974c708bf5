"""Consistent hashing with bounded loads."""

import subprocess
import sys
from collections import Counter

from routers.ring import BoundedRing, mix64, text_key
from tests.routers.views import view


def owners(ring: BoundedRing, ids: list[str], keys: range) -> dict[int, str]:
    candidates = [view(i) for i in ids]
    return {key: ring.choose(key, candidates).id for key in keys}


def test_keys_spread_evenly_over_replicas() -> None:
    ring = BoundedRing()
    ids = [f"replica-{i}" for i in range(6)]
    counts = Counter(owners(ring, ids, range(6000)).values())
    assert set(counts) == set(ids)
    assert max(counts.values()) < 1.35 * 1000 and min(counts.values()) > 0.65 * 1000


def test_adding_a_replica_moves_only_the_keys_it_takes() -> None:
    ring = BoundedRing()
    ids = [f"replica-{i}" for i in range(5)]
    before = owners(ring, ids, range(5000))
    after = owners(ring, [*ids, "replica-new"], range(5000))
    moved = [key for key in before if before[key] != after[key]]
    assert all(after[key] == "replica-new" for key in moved)
    assert 0.08 < len(moved) / 5000 < 0.28  # about 1/6


def test_removing_a_replica_moves_only_its_keys() -> None:
    ring = BoundedRing()
    ids = [f"replica-{i}" for i in range(5)]
    before = owners(ring, ids, range(5000))
    ring.remove("replica-2")
    after = owners(ring, [i for i in ids if i != "replica-2"], range(5000))
    assert all(after[k] == before[k] for k in before if before[k] != "replica-2")


def test_a_full_replica_passes_its_keys_to_the_same_successor() -> None:
    ring = BoundedRing(balance=1.25)
    idle = [view(f"r{i}") for i in range(4)]
    home = ring.choose(42, idle).id
    # Loads 10 on the home replica, 2 elsewhere: the bound is ceil(1.25 * 17 / 4) = 6.
    busy = [view(v.id, in_flight=10 if v.id == home else 2) for v in idle]
    spill = ring.choose(42, busy).id
    assert spill != home
    assert {ring.choose(42, busy).id for _ in range(10)} == {spill}
    # Once the home replica has room again, the key goes home.
    assert ring.choose(42, [view(v.id, in_flight=2) for v in idle]).id == home


def test_no_replica_exceeds_the_bound_under_one_hot_key() -> None:
    ring = BoundedRing(balance=1.25)
    load = Counter[str]()
    ids = [f"r{i}" for i in range(4)]
    for _ in range(200):
        chosen = ring.choose(7, [view(i, in_flight=load[i]) for i in ids]).id
        load[chosen] += 1
        total = sum(load.values())
        assert max(load.values()) <= -(-1.25 * total // 4) + 1
    assert len(load) == 4


def test_a_model_served_by_few_of_many_replicas_is_found_quickly() -> None:
    ring = BoundedRing()
    for i in range(200):
        ring.add(f"r{i:03d}")
    few = [view("r007"), view("r150")]
    assert {ring.choose(key, few).id for key in range(200)} == {"r007", "r150"}


def test_keys_are_the_same_in_every_process() -> None:
    code = (
        "from routers.ring import BoundedRing, text_key, mix64\n"
        "from routers import ReplicaView\n"
        "c = [ReplicaView(id=f'r{i}', url='', models=(), healthy=True, in_flight=0)"
        " for i in range(5)]\n"
        "r = BoundedRing()\n"
        "print([r.choose(text_key(f's{k}'), c).id for k in range(50)], mix64(12345))"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
            env={"PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(runs) == 1
    ring = BoundedRing()
    here = [ring.choose(text_key(f"s{k}"), [view(f"r{i}") for i in range(5)]).id for k in range(50)]
    assert runs.pop() == f"{here} {mix64(12345)}\n"
