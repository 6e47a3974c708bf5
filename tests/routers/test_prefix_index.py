"""The approximate prefix index: what it believes each replica holds."""

import random

from routers.prefix_index import PrefixIndex, checkpoints
from tests.routers.views import prompt

SYSTEM = tuple(range(1000, 1016))  # a 16-block (256-token) system prompt


def test_checkpoints_double_from_the_fourth_block_and_end_at_the_last() -> None:
    assert checkpoints(64) == (4, 8, 16, 32, 64)
    assert checkpoints(50) == (4, 8, 16, 32, 50)
    assert checkpoints(3) == (3,)
    assert checkpoints(0) == ()


def test_a_prompt_sent_to_a_replica_is_cached_there_and_nowhere_else() -> None:
    index = PrefixIndex()
    request = prompt(*SYSTEM, 1, 2, 3, 4)
    index.insert("a", request.prefix_hashes, 320)
    assert index.cached(request.prefix_hashes, 320) == {"a": 320}
    other = prompt(*range(20))
    assert index.cached(other.prefix_hashes, 320) == {}


def test_a_shared_prefix_counts_up_to_the_checkpoint_below_where_prompts_part() -> None:
    index = PrefixIndex()
    index.insert("a", prompt(*SYSTEM, 7, 7, 7, 7).prefix_hashes, 320)
    index.insert("a", prompt(*SYSTEM, 8, 8, 8, 8).prefix_hashes, 320)
    # Shares 16 blocks (a checkpoint): known exactly. 18 shared: rounded down to 16.
    question = prompt(*SYSTEM, 9, 9, 9, 9, 9)
    assert index.cached(question.prefix_hashes, 336) == {"a": 16 * 16}
    longer = prompt(*SYSTEM, 7, 7, 5, 5, 5)
    assert index.cached(longer.prefix_hashes, 336) == {"a": 16 * 16}


def test_each_replica_gets_its_own_depth() -> None:
    index = PrefixIndex()
    conversation = (*SYSTEM, *range(50, 66))  # 32 blocks
    index.insert("a", prompt(*SYSTEM, 1, 1, 1, 1).prefix_hashes, 320)
    index.insert("a", prompt(*SYSTEM, 2, 2, 2, 2).prefix_hashes, 320)
    index.insert("b", prompt(*conversation).prefix_hashes, 512)
    next_turn = prompt(*conversation, 3, 3, 3, 3)
    assert index.cached(next_turn.prefix_hashes, 576) == {"a": 256, "b": 512}
    assert index.match(next_turn.prefix_hashes) == {"a": 16, "b": 32}


def test_a_match_is_rounded_down_to_a_checkpoint() -> None:
    index = PrefixIndex()
    index.insert("a", prompt(*range(40)).prefix_hashes, 640)
    # 24 blocks shared: checkpoints 4, 8 and 16 match, 32 does not.
    sharer = prompt(*range(24), 99, 99, 99, 99)
    assert index.cached(sharer.prefix_hashes, 448) == {"a": 256}
    assert index.cached(prompt(*range(40)).prefix_hashes, 640) == {"a": 640}


def test_a_prompt_beyond_the_hashed_window_is_cached_as_far_as_the_shortest_sent() -> None:
    index = PrefixIndex()
    document = tuple(range(200))  # 3,200 tokens; only the first 64 blocks are hashed
    index.insert("a", prompt(*document, 1, 2).prefix_hashes, 3232)
    index.insert("a", prompt(*document, 3, 4, 5).prefix_hashes, 3248)
    question = prompt(*document, 6)
    assert len(question.prefix_hashes) == 64
    assert index.cached(question.prefix_hashes, 3216) == {"a": 3216}
    longer_question = prompt(*document, *range(7, 20))
    assert index.cached(longer_question.prefix_hashes, 3408) == {"a": 3232}


def test_the_least_recently_used_prefix_is_forgotten_first() -> None:
    index = PrefixIndex(max_entries=4)
    old, hot, new = prompt(*range(8)), prompt(*range(100, 108)), prompt(*range(200, 208))
    index.insert("a", old.prefix_hashes, 128)
    index.insert("b", hot.prefix_hashes, 128)
    index.insert("b", hot.prefix_hashes, 128)  # used again: more recent than `old`
    index.insert("c", new.prefix_hashes, 128)
    assert len(index) == 4
    assert index.cached(old.prefix_hashes, 128) == {}
    assert index.cached(hot.prefix_hashes, 128) == {"b": 128}
    assert index.cached(new.prefix_hashes, 128) == {"c": 128}


def test_a_dropped_replica_is_forgotten_and_the_rest_kept() -> None:
    index = PrefixIndex()
    shared = prompt(*SYSTEM, 1)
    only_a = prompt(*range(500, 520))
    index.insert("a", shared.prefix_hashes, 272)
    index.insert("b", shared.prefix_hashes, 272)
    index.insert("a", only_a.prefix_hashes, 320)
    before = len(index)
    index.drop("a")
    assert index.cached(shared.prefix_hashes, 272) == {"b": 272}
    assert index.cached(only_a.prefix_hashes, 320) == {}
    assert len(index) == before - 2  # only_a's ends (its middle was set aside)


def test_setting_aside_the_middle_of_lone_prompts_changes_no_answer() -> None:
    rng = random.Random(5)
    lazy, eager = PrefixIndex(), PrefixIndex()
    eager.defer = False
    families = [tuple(rng.randrange(10**6) for _ in range(rng.randrange(4, 40))) for _ in range(30)]
    for _ in range(600):
        family = families[rng.randrange(30)] if rng.random() < 0.5 else ()
        blocks = (*family, *(rng.randrange(10**6) for _ in range(rng.randrange(0, 60))))
        request = prompt(*blocks) if blocks else prompt(1)
        tokens = 16 * len(blocks) + rng.randrange(16)
        assert lazy.cached(request.prefix_hashes, tokens) == eager.cached(
            request.prefix_hashes, tokens
        )
        replica = f"r{rng.randrange(4)}"
        lazy.insert(replica, request.prefix_hashes, tokens)
        eager.insert(replica, request.prefix_hashes, tokens)
    assert len(lazy) < len(eager)


def test_prompts_without_full_blocks_are_not_indexed() -> None:
    index = PrefixIndex()
    index.insert("a", (), 10)
    assert len(index) == 0
    assert index.cached((), 10) == {}


def test_the_holders_of_a_prefix_come_in_the_order_they_were_first_sent_it() -> None:
    # Strategies that sample candidates take the holders in this order, so it must not
    # depend on string hashing (a set's order changes with PYTHONHASHSEED); a dropped
    # replica leaves the rest in order.
    index = PrefixIndex()
    request = prompt(*SYSTEM, 1, 2, 3, 4)
    sent: list[str] = []
    for i in range(24):
        replica = f"replica-{(i * 7) % 12:03d}"
        index.insert(replica, request.prefix_hashes, 320)
        if replica not in sent:
            sent.append(replica)
        assert list(index.cached(request.prefix_hashes, 320)) == sent
        assert list(index.match(request.prefix_hashes)) == sent
    index.drop("replica-007")
    sent.remove("replica-007")
    assert list(index.cached(request.prefix_hashes, 320)) == sent


def test_lone_prompts_beyond_their_share_of_the_index_are_forgotten_oldest_first() -> None:
    index = PrefixIndex(max_entries=64)  # 32 lone prompts at most
    lone = [prompt(*range(1000 * i, 1000 * i + 20)) for i in range(40)]
    for request in lone:
        index.insert("a", request.prefix_hashes, 320)
    kept = [bool(index.cached(request.prefix_hashes, 320)) for request in lone]
    assert kept == [False] * 8 + [True] * 32
    assert len(index) == 2 * 32


def test_a_prompt_sharing_a_lone_one_indexes_it_even_without_a_lookup_first() -> None:
    index = PrefixIndex()
    first = prompt(*SYSTEM, *range(40))
    index.insert("a", first.prefix_hashes, 16 * 56)
    # Inserted without `cached` first (a caller that does not look up): both are held.
    index.insert("b", prompt(*SYSTEM, 1, 2, 3, 4).prefix_hashes, 320)
    assert index.cached(prompt(*SYSTEM, 7).prefix_hashes, 272) == {"a": 256, "b": 256}
    assert index.cached(first.prefix_hashes, 16 * 56) == {"a": 16 * 56, "b": 256}
