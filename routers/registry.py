"""Strategies come from the `turnout.routers` entry-point group, built-ins included."""

from importlib.metadata import entry_points
from typing import Any

from routers.types import Strategy

GROUP = "turnout.routers"


class StrategyNotFound(LookupError):
    """The configured strategy name matches no installed entry point."""


def available() -> list[str]:
    """Names of every installed strategy, sorted."""
    return sorted({ep.name for ep in entry_points(group=GROUP)})


def load(name: str, **options: Any) -> Strategy:
    """Instantiate the strategy registered as `name`."""
    for ep in entry_points(group=GROUP):
        if ep.name == name:
            factory = ep.load()
            strategy = factory(**options)
            if not isinstance(strategy, Strategy):
                raise StrategyNotFound(f"entry point {name!r} ({ep.value}) is not a strategy")
            return strategy
    raise StrategyNotFound(
        f"unknown strategy {name!r}: misspelled or not installed; "
        f"available: {', '.join(available()) or 'none'}"
    )
