"""Every registered strategy, built-in or not, against the same scenarios."""

import inspect
import random
from collections.abc import Callable

import pytest

import routers
from loadtest.sim.engine import EngineConfig
from loadtest.sim.virtual import VirtualReplica, VirtualRequest, run_virtual
from routers import Metrics, Outcome, ReplicaView, RouteRequest
from routers.registry import _entry_point
from tests.routers.views import prompt, view

NAMES = routers.available()


def build(name: str, seed: int = 0) -> routers.Strategy:
    factory = _entry_point(name).load()
    takes_seed = "seed" in inspect.signature(factory).parameters
    return routers.load(name, seed=seed) if takes_seed else routers.load(name)


def hook(strategy: routers.Strategy, name: str) -> Callable[..., None]:
    """The strategy's hook, or a no-op: the hooks are optional (the gateway checks too)."""
    found: Callable[..., None] = getattr(strategy, name, lambda *args: None)
    return found


def requests(count: int, rng: random.Random) -> list[RouteRequest]:
    out = []
    for n in range(count):
        kind = n % 4
        if kind == 0:
            out.append(RouteRequest(model="m", request_id=f"r{n}"))  # no prompt facts at all
        elif kind == 1:
            out.append(prompt(*range(8), n, id=f"r{n}", session=f"s{n % 3}"))
        elif kind == 2:
            out.append(prompt(*range(n, n + rng.randrange(1, 90)), id=f"r{n}"))
        else:
            out.append(prompt(1, 2, tokens=0))  # no id, no tokens
    return out


def scenarios(rng: random.Random) -> list[list[ReplicaView]]:
    odd = ReplicaView(
        id="odd", url="u", models=("m",), healthy=True, in_flight=2, metrics_stale=False
    )
    weird = ReplicaView(
        id="weird", url="u", models=("m",), healthy=True, in_flight=0,
        metrics=Metrics(waiting=-1, running=0, kv_usage=None, prefix_hit_rate=None),
        metrics_stale=False,
    )  # fmt: skip
    many = [
        view(
            f"r{i:03d}",
            waiting=rng.randrange(5),
            running=rng.randrange(50),
            kv_usage=rng.random(),
            in_flight=rng.randrange(40),
            awaiting=1,
            awaiting_tokens=rng.randrange(5000),
        )
        for i in range(500)
    ]
    return [
        [view("a"), view("b"), view("c")],  # never scraped
        [view("a", waiting=1, running=3, kv_usage=0.5), view("b", waiting=0, stale=True)],
        [
            view("a", waiting=2, running=4, kv_usage=0.1, in_flight=6),
            view("b", waiting=9, kv_usage=0.9),
        ],
        [odd, view("b", waiting=0, running=1, kv_usage=0.2)],  # metrics None though fresh
        [weird, view("b", waiting=0, running=1)],  # no usage figure, odd numbers
        many,
    ]


@pytest.mark.parametrize("name", NAMES)
def test_no_candidates_none_one_candidate_it(name: str) -> None:
    strategy = build(name)
    for request in requests(8, random.Random(1)):
        assert strategy.choose(request, []) is None
        only = view("only", waiting=3, running=1)
        assert strategy.choose(request, [only]) is only


@pytest.mark.parametrize("name", NAMES)
def test_always_one_of_the_candidates_whatever_the_metrics(name: str) -> None:
    rng = random.Random(2)
    strategy = build(name)
    assert strategy.name == name
    finished = hook(strategy, "on_request_finished")
    for candidates in scenarios(rng):
        for request in requests(40, rng):
            choice = strategy.choose(request, candidates)
            assert choice is not None and any(choice is c for c in candidates)
            finished(request, Outcome(choice.id, True, 0.05))


@pytest.mark.parametrize("name", NAMES)
def test_hooks_take_anything_the_gateway_may_send(name: str) -> None:
    strategy = build(name)
    request = prompt(*range(10), id="x")
    added = hook(strategy, "on_replica_added")
    removed = hook(strategy, "on_replica_removed")
    for call, replica in ((added, "a"), (removed, "a"), (removed, "never-seen"), (added, "a")):
        call(replica)
    for outcome in (
        Outcome("a", False, None),
        Outcome("unknown", True, 0.2),
        Outcome("a", True, 0.0),
    ):
        hook(strategy, "on_request_finished")(request, outcome)
    choice = strategy.choose(request, [view("a"), view("b")])
    assert choice is not None and choice.id in ("a", "b")


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_choices(name: str) -> None:
    def run() -> list[str]:
        rng = random.Random(3)
        strategy = build(name, seed=5)
        picks = []
        for candidates in scenarios(rng)[:3]:
            for request in requests(30, rng):
                choice = strategy.choose(request, candidates)
                assert choice is not None
                picks.append(choice.id)
        return picks

    assert run() == run()


@pytest.mark.parametrize("name", NAMES)
def test_every_request_finishes_in_virtual_time(name: str) -> None:
    config = EngineConfig(max_num_seqs=8, max_num_batched_tokens=256)
    fleet = [VirtualReplica(f"r{i}", "tiny", config, model="m") for i in range(4)]
    rng = random.Random(4)
    shared = list(range(10_000, 10_064))
    arrivals = [
        VirtualRequest(
            time=n * 0.002,
            model="m",
            prompt_token_ids=(shared if n % 2 else [])
            + list(range(n * 500, n * 500 + rng.randrange(5, 200))),
            max_tokens=rng.randrange(1, 30),
            ignore_eos=True,
            session=f"s{n % 7}",
        )
        for n in range(400)
    ]
    result = run_virtual(fleet, build(name), arrivals)
    assert len(result.records) == 400
    assert all(r.status == "ok" and r.output_tokens > 0 for r in result.records)
    assert {r.replica for r in result.records} <= {"r0", "r1", "r2", "r3"}
