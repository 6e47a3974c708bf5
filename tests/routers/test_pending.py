"""The uncached share of each replica's in-flight prompts."""

from routers.pending import PendingPrefill


def test_share_is_uncached_over_prompt_tokens_of_what_is_in_flight() -> None:
    pending = PendingPrefill()
    pending.sent("r1", "a", 100, 1000)
    pending.sent("r2", "a", 300, 1000)
    pending.sent("r3", "b", 50, 50)
    assert pending.share == {"a": 0.2, "b": 1.0}
    pending.finished("r1")
    assert pending.share["a"] == 0.3
    pending.finished("r2")
    assert "a" not in pending.share  # nothing in flight: no share known
    assert len(pending) == 1


def test_a_retry_under_the_same_id_replaces_the_first_attempt() -> None:
    pending = PendingPrefill()
    pending.sent("r1", "a", 0, 1000)
    pending.sent("r1", "b", 1000, 1000)
    assert pending.share == {"b": 1.0}
    pending.finished("r1")
    assert pending.share == {}


def test_unknown_or_repeated_finishes_and_id_less_requests_change_nothing() -> None:
    pending = PendingPrefill()
    pending.sent("", "a", 10, 100)
    pending.sent("r1", "a", 10, 100)
    pending.finished("nope")
    pending.finished("r1")
    pending.finished("r1")
    assert pending.share == {} and len(pending) == 0


def test_state_stays_bounded_when_finishes_go_missing() -> None:
    pending = PendingPrefill(max_tracked=100)
    for i in range(1000):
        pending.sent(f"r{i}", "a", 1, 2)
    assert len(pending) <= 100
    assert pending.share == {"a": 0.5}


def test_dropping_a_replica_forgets_its_requests() -> None:
    pending = PendingPrefill()
    pending.sent("r1", "a", 1, 2)
    pending.sent("r2", "b", 1, 4)
    pending.drop("a")
    assert pending.share == {"b": 0.25} and len(pending) == 1
    pending.finished("r1")  # its finish still arrives later: harmless
    assert pending.share == {"b": 0.25}
