import pytest

import routers
from routers.least_work import LeastWork
from routers.p2c import PowerOfTwo
from routers.registry import StrategyOptionsError, options_of, parse_options


def test_builtins_are_registered_as_entry_points() -> None:
    assert {
        "round_robin", "queue_depth", "p2c", "least_work", "prefix_least_work", "kv_usage",
        "prefix_affinity", "session_affinity", "least_latency", "lmetric",
    } <= set(routers.available())  # fmt: skip


def test_unknown_name_lists_what_is_available() -> None:
    with pytest.raises(
        routers.StrategyNotFound, match=r"misspelled or not installed; available: .*round_robin"
    ):
        routers.load("round_robbin")


def test_options_reach_the_constructor_typed_from_strings() -> None:
    strategy = routers.load("p2c", **parse_options("choices=3, load=in_flight ,seed=7"))
    assert isinstance(strategy, PowerOfTwo) and strategy.choices == 3
    weighted = routers.load("least_work", **parse_options('{"decode_weight": 2}'))
    assert isinstance(weighted, LeastWork) and weighted.decode_weight == 2.0
    assert routers.load("least_latency", peak="yes", per_token="false").peak is True  # type: ignore[attr-defined]
    assert routers.load("p2c", seed="none") is not None


@pytest.mark.parametrize(
    ("name", "options", "words"),
    [
        ("p2c", {"choise": 3}, ["no option 'choise'", "choices (an integer, default 2)"]),
        ("p2c", {"choices": "many"}, ["option 'choices'", "'many' is not an integer"]),
        ("p2c", {"choices": 2.5}, ["'choices'", "not an integer"]),
        ("p2c", {"choices": True}, ["'choices'", "not an integer"]),
        ("p2c", {"load": "queue"}, ["'load'", "one of 'in_flight', 'work'"]),
        ("p2c", {"choices": 1}, ["strategy 'p2c'", "choices must be at least 2"]),
        ("least_latency", {"peak": "maybe"}, ["'peak'", "not a boolean"]),
        ("round_robin", {"seed": 1}, ["no option 'seed'", "its options: none"]),
    ],
)
def test_bad_options_get_one_line_naming_them(
    name: str, options: dict[str, object], words: list[str]
) -> None:
    with pytest.raises(StrategyOptionsError) as caught:
        routers.load(name, **options)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("choices", ["'choices' is not key=value"]),
        ("{nope", ["not a JSON object"]),
        ("[1, 2]", ["not a JSON object"]),
        ("=3", ["is not key=value"]),
    ],
)
def test_unparsable_options_are_refused(text: str, words: list[str]) -> None:
    with pytest.raises(StrategyOptionsError) as caught:
        parse_options(text)
    for word in words:
        assert word in str(caught.value)


def test_empty_options_are_none() -> None:
    assert parse_options("") == parse_options("  ") == {}


def test_every_strategy_describes_its_options() -> None:
    described = options_of("prefix_least_work")
    assert described["cache_weight"] == "a number, default 4.0"
    assert described["seed"] == "an integer or none, default none"
    assert options_of("round_robin") == {}
