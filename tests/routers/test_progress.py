import random

import pytest

from routers import RouteRequest
from routers.least_work import LeastWork
from routers.progress import PrefillProgress
from routers.signals import batch_sizes
from tests.routers.views import view


def queued(progress: PrefillProgress, now: float | None, **counts: int) -> dict[str, float]:
    candidates = [view(name, awaiting_tokens=count) for name, count in counts.items()]
    return dict(zip(counts, progress.queued(candidates, now), strict=True))


def learn(progress: PrefillProgress, replica: str, tokens: int, seconds: float) -> float:
    """A queue of `tokens` on `replica` whose first bytes all come back `seconds` later;
    returns the time after it."""
    queued(progress, 0.0, **{replica: 0})
    progress.sent(replica, tokens, 0.0)
    queued(progress, seconds, **{replica: 0})
    return seconds


def test_without_a_time_or_a_learned_rate_the_counts_stand() -> None:
    progress = PrefillProgress()
    assert queued(progress, None, a=4000, b=1000) == {"a": 4000, "b": 1000}
    # Seen twice, time passing, but no first byte yet: nothing is known of its speed.
    assert queued(progress, 0.0, a=4000) == {"a": 4000}
    assert queued(progress, 0.5, a=4000) == {"a": 4000}


def test_the_drain_rate_is_learned_from_first_bytes_coming_back() -> None:
    progress = PrefillProgress(alpha=1.0)
    learn(progress, "a", 2000, 0.1)
    assert progress.rate("a") == pytest.approx(20_000)
    assert progress.rate("b") is None


def test_a_queue_is_credited_with_the_work_done_since_it_began() -> None:
    progress = PrefillProgress(alpha=1.0)
    now = learn(progress, "a", 2000, 0.1)  # 20,000 tokens a second
    progress.sent("a", 4000, now)  # a new queue begins
    assert queued(progress, now + 0.05, a=4000)["a"] == pytest.approx(3000)
    # Never below nothing left of what was queued when the period began.
    assert queued(progress, now + 1.0, a=4000)["a"] == pytest.approx(0)


def test_what_was_sent_after_the_period_began_waits_for_the_next_step() -> None:
    progress = PrefillProgress(alpha=1.0)
    now = learn(progress, "a", 2000, 0.1)
    progress.sent("a", 1000, now)
    progress.sent("a", 3000, now + 0.01)  # joins the queue: not in the step under way
    assert queued(progress, now + 0.04, a=4000)["a"] == pytest.approx(3200)
    assert queued(progress, now + 1.0, a=4000)["a"] == pytest.approx(3000)
    # First bytes for the first 1,000 come back, seen 1 s after they began (the rate
    # learned falls to 1,000 a second): the 3,000 begin then.
    assert queued(progress, now + 1.0, a=3000)["a"] == pytest.approx(3000)
    assert queued(progress, now + 1.05, a=3000)["a"] == pytest.approx(3000 - 50, rel=0.01)


def test_least_work_prefers_the_queue_nearly_done() -> None:
    strategy = LeastWork(seed=0)
    assert strategy.progress is not None
    for replica in ("a", "b"):
        learn(strategy.progress, replica, 2000, 0.1)
    # "a" took 4,000 tokens 0.18 s ago (about 400 left); "b" 1,000 just now.
    a = view("a", in_flight=1, awaiting=1, awaiting_tokens=4000)
    b = view("b", in_flight=1, awaiting=1, awaiting_tokens=1000)
    strategy.progress.sent("a", 4000, 0.1)
    strategy.progress.sent("b", 1000, 0.28)
    request = RouteRequest(model="m", prompt_tokens_estimate=500, now=0.28)
    choice = strategy.choose(request, [a, b])
    assert choice is not None and choice.id == "a"
    # Counting prompts whole until their first byte, "b" wins.
    old = LeastWork(progress=False, seed=0).choose(request, [a, b])
    assert old is not None and old.id == "b"


def test_removed_replicas_are_forgotten() -> None:
    strategy = LeastWork(seed=0)
    assert strategy.progress is not None
    learn(strategy.progress, "a", 2000, 0.1)
    strategy.on_replica_removed("a")
    assert strategy.progress.rate("a") is None


def test_alpha_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="alpha"):
        PrefillProgress(alpha=0)


def test_without_a_time_work_is_the_counts_less_cached_plus_the_batch() -> None:
    # Its batch is `routers.signals.batch_sizes`, taken in the same pass: on fresh scrapes
    # and, with one stale candidate, on in-flight counts alone for all of them.
    rng = random.Random(3)
    for _ in range(200):
        candidates = [
            view(
                f"r{i}",
                in_flight=rng.randrange(10),
                waiting=None if rng.random() < 0.1 else float(rng.randrange(5)),
                running=float(rng.randrange(10)),
                in_flight_at_scrape=rng.randrange(10),
                stale=rng.random() < 0.1,
                awaiting_tokens=rng.randrange(3) * rng.randrange(100, 2000),
            )
            for i in range(rng.randrange(1, 7))
        ]
        cached = {v.id: rng.randrange(1000) for v in candidates if rng.random() < 0.3}
        progress = PrefillProgress()
        expected = [
            v.awaiting_prompt_tokens - 4.0 * cached.get(v.id, 0) + 2.0 * b
            for v, b in zip(candidates, batch_sizes(candidates), strict=True)
        ]
        assert progress.work(candidates, None, 2.0, cached, 4.0)[0] == expected


def test_with_a_time_work_is_the_credited_queue_and_names_the_single_lowest() -> None:
    # Two trackers fed the same counts: `queued` gives what is left of each queue, `work`
    # the scores built on it, and the position of the lowest score, -1 when it is shared.
    rng = random.Random(5)
    for _ in range(100):
        names = [f"r{i}" for i in range(rng.randrange(1, 7))]
        plain, scored = PrefillProgress(), PrefillProgress()
        now = 0.0
        for _ in range(6):
            now += rng.random() * 0.05
            candidates = [
                view(
                    name,
                    in_flight=rng.randrange(4),
                    waiting=float(rng.randrange(3)),
                    running=float(rng.randrange(4)),
                    awaiting_tokens=rng.randrange(3) * 500,
                )
                for name in names
            ]
            left = plain.queued(candidates, now)
            scores, at = scored.work(candidates, now, 2.0)
            batches = batch_sizes(candidates)
            assert scores == pytest.approx(
                [q + 2.0 * b for q, b in zip(left, batches, strict=True)]
            )
            lowest = min(scores)
            if scores.count(lowest) == 1:
                assert at == scores.index(lowest)
            else:
                assert at == -1
            for name in names:
                if rng.random() < 0.5:
                    plain.sent(name, 500, now)
                    scored.sent(name, 500, now)


def test_the_queue_weighs_its_uncached_share() -> None:
    progress = PrefillProgress(alpha=1.0)
    queued(progress, 0.0, a=0)
    progress.sent("a", 1000, 0.0, uncached=100)
    progress.sent("a", 1000, 0.0, uncached=300)
    assert queued(progress, 0.0, a=2000)["a"] == pytest.approx(400)  # 2,000 x 0.2
    # First bytes of the first prompt come back: it took its part, the share stays.
    assert queued(progress, 0.1, a=1000)["a"] == pytest.approx(200)
    # A prompt this tracker did not send (another sender's, a retry): counted uncached.
    assert queued(progress, 0.1, a=2000)["a"] == pytest.approx(200 + 1000)
    # Told nothing of a prompt's cache: all of it is new.
    progress.sent("a", 2000, 0.1)
    assert queued(progress, 0.1, a=4000)["a"] == pytest.approx(1200 + 2000)
    # The queue empties: the next one starts afresh.
    assert queued(progress, 0.2, a=0)["a"] == 0
    progress.sent("a", 500, 0.2, uncached=50)
    assert queued(progress, 0.2, a=500)["a"] == pytest.approx(50)


def steps_left(
    progress: PrefillProgress,
    now: float,
    a_ends: float,
    awaiting: int = 0,
) -> list[float]:
    """Queues left on a (its step under way ends at `a_ends`) and b (its, in 5 ms)."""
    candidates = [
        view("a", in_flight=3, awaiting_tokens=awaiting, step_ends_at=a_ends),
        view("b", in_flight=3, step_ends_at=now + 0.005),
    ]
    return progress.queued(candidates, now)


@pytest.mark.parametrize(("phase", "expected"), [(True, (380.0, 100.0)), (False, (0.0, 0.0))])
def test_a_step_under_way_holds_the_next_prompt_back_until_it_ends(
    phase: bool, expected: tuple[float, float]
) -> None:
    # Learned: 20,000 tokens a second on both. The next prompt starts after 19 ms on a
    # (380 tokens' worth), 5 ms on b (100).
    progress = PrefillProgress(alpha=1.0, phase=phase)
    learn(progress, "a", 2000, 0.1)
    now = learn(progress, "b", 2000, 0.1) + 1.0
    assert steps_left(progress, now, now + 0.019) == pytest.approx(expected)
    if phase:
        assert steps_left(progress, now, now - 0.001)[0] == 0  # that step is over
        assert steps_left(progress, now, 0.0)[0] == 0  # not known
        # A queue longer than the rest of the step stands as it is.
        progress.sent("a", 1000, now)
        assert steps_left(progress, now, now + 0.019, awaiting=1000)[0] == pytest.approx(1000)


def test_least_work_sends_the_next_prompt_where_the_step_ends_first() -> None:
    strategy = LeastWork(seed=1)
    assert strategy.progress is not None
    learn(strategy.progress, "a", 2000, 0.1)
    now = learn(strategy.progress, "b", 2000, 0.1) + 1.0
    candidates = [
        view("a", in_flight=3, step_ends_at=now + 0.019),
        view("b", in_flight=3, step_ends_at=now + 0.005),
    ]
    request = RouteRequest(model="m", prompt_tokens_estimate=100, now=now)
    assert strategy.choose(request, candidates).id == "b"
    blind = LeastWork(seed=1, phase=False)
    assert blind.progress is not None
    learn(blind.progress, "a", 2000, 0.1)
    learn(blind.progress, "b", 2000, 0.1)
    picks = {blind.choose(request, candidates).id for _ in range(20)}
    assert picks == {"a", "b"}  # a tie without the phase: broken at random
