"""prefix_affinity and session_affinity: consistent hashing with bounded load."""

from collections import Counter
from collections.abc import Sequence

from routers import ReplicaView, RouteRequest
from routers.prefix_affinity import PrefixAffinity
from routers.session_affinity import SessionAffinity
from tests.routers.views import prompt, view

IDS = [f"replica-{i}" for i in range(4)]


def idle() -> list[ReplicaView]:
    return [view(i) for i in IDS]


def pick(
    strategy: PrefixAffinity | SessionAffinity,
    request: RouteRequest,
    candidates: Sequence[ReplicaView],
) -> str:
    choice = strategy.choose(request, candidates)
    assert choice is not None
    return choice.id


def test_prompts_sharing_their_leading_blocks_go_to_one_replica() -> None:
    strategy = PrefixAffinity(seed=0)
    for group in range(20):
        system = tuple(range(group * 100, group * 100 + 8))
        homes = {pick(strategy, prompt(*system, q, q + 1), idle()) for q in range(10)}
        assert len(homes) == 1


def test_different_prefixes_spread_over_the_fleet() -> None:
    strategy = PrefixAffinity(seed=0)
    homes = Counter(pick(strategy, prompt(*range(g * 10, g * 10 + 6)), idle()) for g in range(400))
    assert set(homes) == set(IDS)
    assert min(homes.values()) > 50


def test_the_key_is_only_the_first_blocks() -> None:
    # Same first 4 blocks, different 5th: same replica by default; apart with 5-block keys.
    one, two = prompt(1, 2, 3, 4, 5), prompt(1, 2, 3, 4, 6)
    assert pick(PrefixAffinity(), one, idle()) == pick(PrefixAffinity(), two, idle())
    five = PrefixAffinity(key_blocks=5)
    homes = {pick(five, prompt(1, 2, 3, 4, n), idle()) for n in range(5, 40)}
    assert len(homes) > 1


def test_a_hot_prefix_overflows_to_one_more_replica_not_everywhere() -> None:
    strategy = PrefixAffinity(seed=0)
    hot = prompt(*range(8))
    load = Counter[str]()
    # Other traffic keeps every replica at 20; the hot prefix brings 12 more. The bound,
    # 1.25 x the average, lets its home take 8 or 9 of them; the rest go to the next
    # replica on the ring, and to no other.
    for _ in range(12):
        candidates = [view(i, in_flight=20 + load[i]) for i in IDS]
        load[pick(strategy, hot, candidates)] += 1
    (home, most), (_, rest) = load.most_common()
    assert home == pick(strategy, hot, idle()) and most >= 8 and most + rest == 12


def test_a_prompt_without_full_blocks_goes_to_the_least_loaded() -> None:
    short = RouteRequest(model="m", prompt_tokens_estimate=5)
    candidates = [view("a", in_flight=3), view("b", in_flight=1)]
    assert pick(PrefixAffinity(seed=0), short, candidates) == "b"
    assert pick(SessionAffinity(seed=0), short, candidates) == "b"


def test_a_session_stays_on_its_replica_whatever_it_says() -> None:
    strategy = SessionAffinity(seed=0)
    for user in range(30):
        homes = {
            pick(strategy, prompt(*range(turn * 7, turn * 7 + 5), session=f"user-{user}"), idle())
            for turn in range(6)
        }
        assert len(homes) == 1


def test_sessions_spread_and_without_one_the_prompt_start_decides() -> None:
    strategy = SessionAffinity(seed=0)
    homes = Counter(pick(strategy, prompt(1, 2, 3, 4, session=f"u{n}"), idle()) for n in range(400))
    assert set(homes) == set(IDS)
    anonymous = {pick(strategy, prompt(9, 9, 9, 9, n), idle()) for n in range(20)}
    assert len(anonymous) == 1


def test_an_overloaded_session_replica_is_left_and_returned_to() -> None:
    strategy = SessionAffinity(seed=0)
    request = prompt(1, 2, 3, 4, session="alice")
    home = pick(strategy, request, idle())
    overloaded = [view(i, in_flight=12 if i == home else 2) for i in IDS]
    away = pick(strategy, request, overloaded)
    assert away != home
    assert pick(strategy, request, idle()) == home


def test_an_ejected_replica_gives_up_only_its_own_sessions() -> None:
    strategy = SessionAffinity(seed=0)
    for replica in IDS:
        strategy.on_replica_added(replica)
    sessions = [prompt(1, 2, 3, 4, session=f"u{n}") for n in range(200)]
    before = [pick(strategy, s, idle()) for s in sessions]
    strategy.on_replica_removed("replica-1")
    rest = [view(i) for i in IDS if i != "replica-1"]
    after = [pick(strategy, s, rest) for s in sessions]
    assert all(a == b for a, b in zip(after, before, strict=True) if b != "replica-1")
    strategy.on_replica_added("replica-1")
    assert [pick(strategy, s, idle()) for s in sessions] == before
