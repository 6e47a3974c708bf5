"""Faults a simulated replica can be told to show: errors, slowness, hangs, stalls, drops.

Set at start-up by `vllm-sim serve --fault-*` flags and at run time by
`POST /sim/faults` (a JSON object with any of the fields below; the others keep
their values; `{"reset": true}` clears all first). `GET /sim/faults` shows them.
"""

import random
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

Verdict = Literal["ok", "error", "rate_limit", "drop"]
ERROR_STATUSES = (500, 502, 503, 504)


class FaultsInvalid(ValueError):
    """A fault update that names an unknown field or gives a value out of range."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class Faults:
    """The faults in force. All off by default.

    Rates are fractions of generation requests (0..1), drawn in this order: drop
    (close the socket without any response), then `error_status` (500 unless told
    502, 503 or 504), then 429.
    """

    error_rate: float = 0.0
    error_status: int = 500  # the status of those errors: 500, 502, 503 or 504
    rate_limit_rate: float = 0.0
    drop_rate: float = 0.0
    step_multiplier: float = 1.0  # > 1: every engine step takes that much longer
    metrics_delay: float = 0.0  # seconds /metrics waits before answering
    metrics_hang: bool = False  # /metrics answers nothing until the fault is cleared
    health_fail: bool = False  # /health answers 503
    stall_after: int | None = None  # a stream goes silent after this many tokens...
    stall_seconds: float | None = None  # ...for this long (None: until the client leaves)
    drop_after: int | None = None  # a stream's connection is cut after this many tokens

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def updated(self, changes: Any) -> "Faults":
        """A copy with `changes` (a parsed JSON object) applied; FaultsInvalid if bad."""
        if not isinstance(changes, dict):
            raise FaultsInvalid("the body must be a JSON object of fault fields")
        reset = changes.get("reset", False)
        if not isinstance(reset, bool):
            raise FaultsInvalid("reset must be true or false", "reset")
        base = Faults() if reset else self
        known = {spec.name: spec for spec in fields(Faults)}
        values: dict[str, Any] = {}
        for name, value in changes.items():
            if name == "reset":
                continue
            if name not in known:
                allowed = ", ".join(["reset", *known])
                raise FaultsInvalid(f"unknown fault {name!r}; allowed: {allowed}", name)
            values[name] = _checked(name, value)
        return replace(base, **values)

    def draw(self, rng: random.Random) -> Verdict:
        """What happens to the next generation request."""
        if not (self.drop_rate or self.error_rate or self.rate_limit_rate):
            return "ok"
        roll = rng.random()
        if roll < self.drop_rate:
            return "drop"
        roll -= self.drop_rate
        if roll < self.error_rate:
            return "error"
        roll -= self.error_rate
        if roll < self.rate_limit_rate:
            return "rate_limit"
        return "ok"


def _checked(name: str, value: Any) -> Any:
    if name in ("metrics_hang", "health_fail"):
        if not isinstance(value, bool):
            raise FaultsInvalid(f"{name} must be true or false", name)
        return value
    if name == "error_status":
        if value not in ERROR_STATUSES or isinstance(value, bool):
            raise FaultsInvalid("error_status must be one of 500, 502, 503, 504", name)
        return int(value)
    if name in ("stall_after", "stall_seconds", "drop_after") and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FaultsInvalid(f"{name} must be a number", name)
    if name.endswith("_rate") and not 0.0 <= value <= 1.0:
        raise FaultsInvalid(f"{name} must be between 0 and 1", name)
    if name == "step_multiplier" and value <= 0:
        raise FaultsInvalid("step_multiplier must be greater than 0", name)
    if value < 0:
        raise FaultsInvalid(f"{name} must not be negative", name)
    if name in ("stall_after", "drop_after"):
        if value != int(value):
            raise FaultsInvalid(f"{name} must be a whole number of tokens", name)
        return int(value)
    return float(value)
