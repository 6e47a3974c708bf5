from dataclasses import FrozenInstanceError

import pytest

from routers import Metrics, ReplicaView
from routers.pool import Replica, ReplicaPool


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def pool_of(*ids: str, clock: Clock | None = None) -> ReplicaPool:
    replicas = [Replica(id=i, url=f"http://127.0.0.1:1/{i}", models=("m",)) for i in ids]
    return ReplicaPool(replicas, clock=clock or Clock(), backoff_base=1.0, backoff_max=4.0)


def test_listener_hears_each_ejection_and_restoration_once() -> None:
    pool = pool_of("a", "b")
    heard: list[tuple[str, bool]] = []
    pool.set_listener(lambda rid, up: heard.append((rid, up)))
    pool.mark_down("a", "refused")
    pool.mark_down("a", "refused again")  # already out: no second event
    pool.mark_up("a")
    pool.mark_up("a")  # already in: no event
    assert heard == [("a", False), ("a", True)]
    assert [v.id for v in pool.candidates("m")] == ["a", "b"]


def test_backoff_doubles_up_to_its_cap() -> None:
    clock = Clock()
    pool = pool_of("a", clock=clock)
    delays = []
    for _ in range(4):
        pool.mark_down("a", "x")
        delays.append(pool.get("a").retry_at - clock.now)
    assert delays == [1.0, 2.0, 4.0, 4.0]
    assert not pool.due_for_check("a")
    clock.now += 4.0
    assert pool.due_for_check("a")


def test_a_scrape_keeps_crediting_what_was_sent_while_it_ran() -> None:
    pool = pool_of("a")
    for _ in range(3):
        pool.acquire("a")
    mark = pool.scrape_mark("a")
    pool.acquire("a")
    pool.acquire("a")
    pool.record_metrics("a", Metrics(waiting=1, running=2), mark=mark)
    view = pool.candidates("m")[0]
    assert view.dispatched_since_scrape == 2
    assert view.in_flight == 5
    assert not view.metrics_stale


def test_models_are_listed_under_their_public_names() -> None:
    pool = ReplicaPool([Replica(id="o", url="http://o", aliases={"llama": "llama3.1:8b"})])
    pool.set_models("o", ["llama3.1:8b", "phi4"], {"llama3.1:8b": 8192})
    assert pool.get("o").models == ("llama", "phi4")
    assert pool.get("o").max_model_len == {"llama": 8192}
    assert [v.id for v in pool.candidates("llama")] == ["o"]
    assert pool.candidates("llama3.1:8b") == []


def test_a_scrape_remembers_how_many_of_ours_were_in_flight_as_it_began() -> None:
    # So that a strategy can tell its own requests in the scrape from other senders':
    # 3 were ours when the scrape began; 2 were sent and 1 finished while it ran.
    pool = pool_of("a")
    for _ in range(3):
        pool.acquire("a")
    mark = pool.scrape_mark("a")
    pool.acquire("a")
    pool.acquire("a")
    pool.release("a")
    pool.record_metrics("a", Metrics(waiting=0, running=9), mark=mark)
    view = pool.candidates("m")[0]
    assert (view.in_flight_at_scrape, view.in_flight) == (3, 4)
    assert view.others_at_scrape == 6  # 9 running, 3 of them ours
    # A scrape recorded without a mark counts from the moment it is recorded.
    pool.record_metrics("a", Metrics(waiting=0, running=4))
    assert pool.candidates("m")[0].in_flight_at_scrape == 4
    # Fewer running than ours in flight (some not yet admitted): no other senders.
    pool.record_metrics("a", Metrics(waiting=1, running=2))
    assert pool.candidates("m")[0].others_at_scrape == 0


def test_a_replica_that_takes_one_request_at_a_time_is_no_candidate_while_busy() -> None:
    one = Replica(id="p", url="http://p", models=("m",), max_in_flight=1)
    pool = ReplicaPool([one, Replica(id="v", url="http://v", models=("m",))])
    pool.acquire("p")
    assert [v.id for v in pool.candidates("m")] == ["v"]
    pool.release("p")
    assert [v.id for v in pool.candidates("m")] == ["p", "v"]


def test_a_view_is_the_frozen_view_its_fields_describe() -> None:
    # The pool fills views without ReplicaView's __init__ (for speed): each must still be a
    # true, frozen, hashable ReplicaView equal to the one the constructor would give.
    now = [10.0]
    pool = ReplicaPool(
        [Replica(id=n, url=f"http://{n}", models=("m",)) for n in ("a", "b", "c")],
        stale_after=3.0,
        clock=lambda: now[0],
    )
    pool.acquire("a", 120)
    pool.record_metrics("a", Metrics(2.0, 3.0, 0.5, 0.25), at=9.5)
    pool.acquire("a", 30)
    pool.first_byte("a", 120)
    pool.record_metrics("b", Metrics(1.0, 0.0), at=5.0)  # older than stale_after
    pool.record_metrics("c", Metrics(1.0, 0.0), at=9.0)
    pool.record_scrape_failure("c")
    views = pool.candidates("m")
    expected = [
        ReplicaView(
            "a",
            "http://a",
            ("m",),
            True,
            2,
            1,
            0,
            1,
            1,
            30,
            Metrics(2.0, 3.0, 0.5, 0.25),
            0.5,
            False,
        ),
        ReplicaView("b", "http://b", ("m",), True, 0, 0, 0, 0, 0, 0, Metrics(1.0, 0.0), 5.0),
        ReplicaView("c", "http://c", ("m",), True, 0, 0, 0, 0, 0, 0, Metrics(1.0, 0.0), 1.0),
    ]
    assert views == expected
    assert [v.metrics_stale for v in views] == [False, True, True]
    assert all(type(v) is ReplicaView for v in views)
    assert {hash(v) for v in views} == {hash(v) for v in expected}
    with pytest.raises(FrozenInstanceError):
        views[0].in_flight = 0  # type: ignore[misc]
    assert pool.view(pool.get("a")) == expected[0]


def test_lazy_candidates_are_the_candidates_each_built_when_first_read() -> None:
    now = [10.0]
    pool = ReplicaPool(
        [Replica(id=f"r{i}", url=f"http://r{i}", models=("m",)) for i in range(7)],
        clock=lambda: now[0],
    )
    pool.acquire("r3", 40)
    pool.record_metrics("r5", Metrics(1.0, 2.0), at=9.0)
    pool.mark_down("r6", "gone")
    eager = pool.candidates("m")
    lazy = pool.lazy_candidates("m")
    assert len(lazy) == len(eager) == 6
    assert lazy[3] == eager[3] and lazy[3] is lazy[3]  # read twice: the same view
    assert lazy[-1] == eager[-1]
    assert lazy[1::2] == eager[1::2]
    assert list(lazy) == eager
    assert [v.id for v in lazy] == [v.id for v in eager]
    assert not pool.lazy_candidates("other")


def test_stream_chunks_time_the_replicas_decode_steps() -> None:
    clock = Clock()
    pool = pool_of("a", clock=clock)
    r = pool.get("a")

    def burst(at: float) -> None:
        """One engine step's tokens: three chunks within a millisecond."""
        for spread in (0.0, 0.0004, 0.0008):
            clock.now = 100.0 + at + spread
            pool.tokens("a")

    pool.acquire("a", 100)
    burst(0.000)
    pool.first_byte("a", 100)
    assert (r.step_ended_at, r.step_seconds, r.step_ends_at) == (100.0, 0.0, 0.0)
    burst(0.010)  # no prompt of ours awaited its first byte: a decode step of 10 ms
    assert r.step_seconds == pytest.approx(0.010)
    assert r.step_ends_at == pytest.approx(100.020)
    pool.acquire("a", 500)
    burst(0.050)  # a prompt awaited its first byte: this step prefilled, not counted
    pool.first_byte("a", 500)
    assert r.step_seconds == pytest.approx(0.010)
    burst(0.070)  # 20 ms of decode: moves the average a fifth of the way
    assert r.step_seconds == pytest.approx(0.012)
    burst(2.000)  # after an idle gap: no step's length
    assert r.step_seconds == pytest.approx(0.012)
    burst(2.010)
    assert r.step_seconds == pytest.approx(0.012 + 0.2 * (0.010 - 0.012))
    # The step under way should end a decode step's length after the last burst began.
    (view,) = pool.candidates("m")
    assert view.step_ends_at == pytest.approx(102.010 + r.step_seconds)
    # Once nothing of ours is in flight there, its steps are no longer seen.
    pool.release("a")
    assert pool.candidates("m")[0].step_ends_at > 0
    pool.release("a")
    assert pool.candidates("m")[0].step_ends_at == 0.0
