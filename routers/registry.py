"""Strategies come from the `turnout.routers` entry-point group, built-ins included.

A strategy's options are its constructor's keyword arguments: `load` checks them against
the constructor's signature and annotations (types: int, float, bool, str, a Literal of
strings, any of them or None) and answers a mistake with one line naming the option and
what it accepts.
"""

import inspect
import json
import types
import typing
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from types import MappingProxyType
from typing import Any, Literal, Union

from routers.types import Strategy

GROUP = "turnout.routers"


class StrategyNotFound(LookupError):
    """The configured strategy name matches no installed entry point."""


class StrategyOptionsError(ValueError):
    """Options a strategy does not take, or values it does not accept (one line)."""


def available() -> list[str]:
    """Names of every installed strategy, sorted."""
    return sorted({ep.name for ep in entry_points(group=GROUP)})


def factory(name: str) -> Callable[..., Any]:
    """What the entry point `name` names (a strategy class or factory), not yet called."""
    made: Callable[..., Any] = _entry_point(name).load()
    return made


def load(name: str, **options: Any) -> Strategy:
    """Instantiate the strategy registered as `name` with `options` (checked, and typed
    from strings where the constructor wants numbers or booleans)."""
    ep = _entry_point(name)
    made = ep.load()
    checked = check_options(name, made, options)
    try:
        strategy = made(**checked)
    except (TypeError, ValueError) as exc:
        raise StrategyOptionsError(f"strategy {name!r}: {exc}") from None
    if not isinstance(strategy, Strategy):
        raise StrategyNotFound(f"entry point {name!r} ({ep.value}) is not a strategy")
    return strategy


def options_of(name: str) -> dict[str, str]:
    """Option name -> "type, default ..." for the strategy registered as `name`."""
    return {
        option: f"{_describe(kind)}, default {_show(default)}"
        for option, (kind, default) in _parameters(_entry_point(name).load()).items()
    }


def parse_options(text: str) -> dict[str, Any]:
    """Options from a JSON object (`{"choices": 3}`) or a comma-separated key=value list
    (`choices=3,seed=7`, values left as strings for `load` to type)."""
    text = text.strip()
    if not text:
        return {}
    if text.startswith(("{", "[")):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StrategyOptionsError(f"not a JSON object: {exc}") from None
        if not isinstance(value, dict):
            raise StrategyOptionsError("not a JSON object")
        return value
    options: dict[str, Any] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise StrategyOptionsError(
                f"{part.strip()!r} is not key=value; give a JSON object or key=value,key=value"
            )
        options[key.strip()] = value.strip()
    return options


def check_options(
    name: str, factory: Callable[..., Any], options: dict[str, Any]
) -> dict[str, Any]:
    """`options` typed for `factory`, or StrategyOptionsError naming the first bad one."""
    params = _parameters(factory)
    checked: dict[str, Any] = {}
    for option, value in options.items():
        if option not in params:
            allowed = "; ".join(
                f"{param} ({_describe(kind)}, default {_show(default)})"
                for param, (kind, default) in params.items()
            )
            raise StrategyOptionsError(
                f"strategy {name!r} has no option {option!r}; its options: {allowed or 'none'}"
            )
        kind, _ = params[option]
        try:
            checked[option] = _coerce(value, kind)
        except ValueError:
            raise StrategyOptionsError(
                f"strategy {name!r} option {option!r}: {value!r} is not {_describe(kind)}"
            ) from None
    return checked


def _entry_point(name: str) -> EntryPoint:
    for ep in entry_points(group=GROUP):
        if ep.name == name:
            return ep
    raise StrategyNotFound(
        f"unknown strategy {name!r}: misspelled or not installed; "
        f"available: {', '.join(available()) or 'none'}"
    )


def _parameters(factory: Callable[..., Any]) -> dict[str, tuple[Any, Any]]:
    """Keyword parameters of `factory`: name -> (annotation, default)."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # unresolvable annotations: take values as given
        hints = {}
    params = {}
    for param in inspect.signature(factory).parameters.values():
        if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            params[param.name] = (hints.get(param.name, Any), param.default)
    return params


def _coerce(value: Any, kind: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin in (Union, types.UnionType):
        members = typing.get_args(kind)
        if type(None) in members and (value is None or _is_none_word(value)):
            return None
        for member in members:
            if member is type(None):
                continue
            try:
                return _coerce(value, member)
            except ValueError:
                continue
        raise ValueError
    if origin is Literal:
        if value in typing.get_args(kind):
            return value
        raise ValueError
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _BOOLEANS:
            return _BOOLEANS[value.lower()]
        raise ValueError
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            return int(value)
        raise ValueError
    if kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            return float(value)
        raise ValueError
    if kind is str:
        if isinstance(value, str):
            return value
        raise ValueError
    return value


_BOOLEANS = MappingProxyType(
    {
        **dict.fromkeys(("true", "1", "yes", "on"), True),
        **dict.fromkeys(("false", "0", "no", "off"), False),
    }
)


def _is_none_word(value: Any) -> bool:
    return isinstance(value, str) and value.lower() in ("none", "null")


def _describe(kind: Any) -> str:
    origin = typing.get_origin(kind)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(member) for member in typing.get_args(kind))
    if origin is Literal:
        return "one of " + ", ".join(repr(choice) for choice in typing.get_args(kind))
    if kind is type(None):
        return "none"
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    return names.get(kind, getattr(kind, "__name__", str(kind)))


def _show(default: Any) -> str:
    if default is inspect.Parameter.empty:
        return "required"
    return "none" if default is None else repr(default)
