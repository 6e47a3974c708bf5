"""The first-byte estimate: untrusted until it has samples, then a deadline that follows the
replica's usual time, within the floor and the fixed cap."""

from gateway.deadlines import FLOOR_S, MIN_SAMPLES, FirstByteEstimate


def test_the_fixed_timeout_holds_until_enough_samples() -> None:
    estimate = FirstByteEstimate()
    for _ in range(MIN_SAMPLES - 1):
        estimate.observe(0.05)
        assert estimate.deadline(300.0) == 300.0
    estimate.observe(0.05)
    assert estimate.deadline(300.0) == FLOOR_S


def test_the_deadline_follows_a_slower_replica_and_its_spread() -> None:
    steady, jittery = FirstByteEstimate(), FirstByteEstimate()
    for i in range(50):
        steady.observe(2.0)
        jittery.observe(1.0 if i % 2 else 3.0)
    assert 8.0 <= steady.deadline(300.0) < 9.0  # 4 x (2 s + almost no deviation)
    assert jittery.deadline(300.0) > steady.deadline(300.0)
    assert jittery.deadline(10.0) == 10.0  # never beyond the fixed timeout


def test_the_estimate_moves_with_the_replica() -> None:
    estimate = FirstByteEstimate()
    for _ in range(30):
        estimate.observe(0.1)
    fast = estimate.deadline(300.0)
    for _ in range(30):
        estimate.observe(5.0)
    assert estimate.deadline(300.0) > 4 * fast
