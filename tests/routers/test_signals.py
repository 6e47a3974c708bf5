"""The shared load signals: batch sizes on one scale, sampling, tie-breaking."""

import random
from collections import Counter

from routers import ReplicaView
from routers.signals import Positions, batch_sizes, lowest, lowest_then, subset, with_holders
from tests.routers.views import view


def test_batch_is_our_in_flight_plus_what_others_had_at_the_scrape() -> None:
    # The scrape of "a" showed 10, of which 3 were ours then: 7 are someone else's.
    # Ours there now: 2. On "b" everything the scrape showed was ours.
    candidates = [
        view("a", waiting=2, running=8, in_flight_at_scrape=3, in_flight=2),
        view("b", waiting=0, running=6, in_flight_at_scrape=6, in_flight=6),
    ]
    assert batch_sizes(candidates) == [2 + 7, 6]


def test_requests_that_finished_since_the_scrape_do_not_count() -> None:
    # Scraped with 10 running, all ours; 6 of them finished since, 1 was sent.
    # Crediting the scrape with sends (10 + 1) would charge the 6 finished ones.
    candidates = [view("a", waiting=0, running=10, in_flight_at_scrape=10, in_flight=5)]
    assert batch_sizes(candidates) == [5]


def test_others_never_go_negative() -> None:
    # More of ours in flight at the scrape than the scrape saw (some not admitted yet).
    candidates = [view("a", waiting=0, running=2, in_flight_at_scrape=5, in_flight=5)]
    assert batch_sizes(candidates) == [5]


def test_one_stale_scrape_puts_every_candidate_on_local_counts() -> None:
    candidates = [
        view("a", waiting=50, running=50, in_flight_at_scrape=0, in_flight=1),
        view("b", waiting=0, stale=True, in_flight=4),
    ]
    assert batch_sizes(candidates) == [1, 4]
    never_scraped = [view("a", waiting=50, in_flight=1), view("b", in_flight=4)]
    assert batch_sizes(never_scraped) == [1, 4]


def test_a_view_without_metrics_marked_fresh_is_taken_as_unknown() -> None:
    odd = ReplicaView(
        id="x", url="u", models=("m",), healthy=True, in_flight=3, metrics_stale=False
    )
    other = view("y", waiting=9, running=9, in_flight_at_scrape=0, in_flight=1)
    assert batch_sizes([other, odd]) == [1, 3]


def test_small_candidate_lists_are_scored_whole() -> None:
    candidates = [view(str(i)) for i in range(64)]
    assert subset(candidates, random.Random(0), 32) is candidates
    assert subset(candidates, random.Random(0), 0) is candidates


def test_large_lists_are_sampled_evenly_and_differently_each_time() -> None:
    candidates = [view(f"{i:03d}") for i in range(500)]
    rng = random.Random(1)
    seen: Counter[str] = Counter()
    for _ in range(200):
        sample = subset(candidates, rng, 32)
        assert 32 <= len(sample) <= 34
        assert len({v.id for v in sample}) == len(sample)
        seen.update(v.id for v in sample)
    # Every replica turns up, and none far more often than its share (200 * 33 / 500).
    assert len(seen) == 500
    assert max(seen.values()) <= 3 * 200 * 33 / 500


def test_holders_left_out_of_a_sample_are_added() -> None:
    candidates = [view(f"{i:03d}") for i in range(200)]
    positions = Positions()
    sample = subset(candidates, random.Random(2), 8)
    missing = next(v.id for v in candidates if v not in sample)
    widened = with_holders(candidates, sample, {missing: 160, sample[0].id: 16}, positions)
    assert [v.id for v in widened] == [*(v.id for v in sample), missing]
    # A prefix held nearly everywhere is in the sample already: nothing is added.
    everywhere = {v.id: 16 for v in candidates}
    assert with_holders(candidates, sample, everywhere, positions) is sample


def test_positions_follow_a_changed_candidate_list() -> None:
    positions = Positions()
    assert positions.of([view("a"), view("b")]) == {"a": 0, "b": 1}
    assert positions.of([view("b"), view("c")]) == {"b": 0, "c": 1}


def test_ties_are_drawn_at_random_and_repeatably() -> None:
    candidates = [view("a"), view("b"), view("c")]
    rng = random.Random(5)
    many = [lowest([1.0, 0.0, 0.0], candidates, rng).id for _ in range(300)]
    assert set(many) == {"b", "c"} and min(Counter(many).values()) > 100
    again = random.Random(5)
    assert many == [lowest([1.0, 0.0, 0.0], candidates, again).id for _ in range(300)]


def test_a_second_key_settles_ties_before_chance() -> None:
    candidates = [view("a"), view("b"), view("c")]
    seconds = [3.0, 1.0, 2.0]
    rng = random.Random(0)
    for _ in range(20):
        assert lowest_then([0.0, 0.0, 0.0], seconds.__getitem__, candidates, rng).id == "b"
    assert lowest_then([5.0, 0.0, 0.0], seconds.__getitem__, candidates, rng).id == "b"
