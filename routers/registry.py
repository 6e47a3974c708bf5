"""Strategies come from the `turnout.routers` entry-point group, built-ins included."""

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from routers.types import Strategy

GROUP = "turnout.routers"


class StrategyNotFound(LookupError):
    """The configured strategy name matches no installed entry point."""


def available() -> list[str]:
    """Names of every installed strategy, sorted."""
    return sorted({ep.name for ep in entry_points(group=GROUP)})


def factory(name: str) -> Callable[..., Any]:
    """What the entry point `name` names (a strategy class or factory), not yet called."""
    for ep in entry_points(group=GROUP):
        if ep.name == name:
            made: Callable[..., Any] = ep.load()
            return made
    raise StrategyNotFound(
        f"unknown strategy {name!r}: misspelled or not installed; "
        f"available: {', '.join(available()) or 'none'}"
    )


def load(name: str, **options: Any) -> Strategy:
    """Instantiate the strategy registered as `name`."""
    strategy = factory(name)(**options)
    if not isinstance(strategy, Strategy):
        raise StrategyNotFound(f"entry point {name!r} is not a strategy")
    return strategy
