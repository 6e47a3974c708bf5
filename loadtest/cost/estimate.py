"""Dollars per million tokens from measured throughput and a price per GPU-hour.

In one hour the fleet serves I*3600 input and O*3600 output tokens (I, O: measured tokens per
second) and costs C = GPUs * price per GPU-hour. Then:

- all cost on output:   C / (O*3600) * 1e6 dollars per million output tokens
- per token, in or out: C / ((I + O)*3600) * 1e6
- an API charges A = (I*3600*p_in + O*3600*p_out) / 1e6 per hour for the same traffic, at its
  list prices p_in and p_out per million. Split C between input and output tokens in the same
  proportion as the API does, and the fleet's own prices are (C/A)*p_in and (C/A)*p_out per
  million; C/A is the fleet's cost as a fraction of the API's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from loadtest.cost.prices import ApiPrice

SECONDS_PER_HOUR = 3600.0
MILLION = 1e6


class ThroughputError(ValueError):
    """Throughput that cannot be read or used; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Throughput:
    input_tokens_per_s: float
    output_tokens_per_s: float
    source: str  # where the figures come from


@dataclass(frozen=True, slots=True)
class Cost:
    """One fleet price against one API's list prices."""

    fleet_usd_per_hour: float
    usd_per_million_output_all: float
    usd_per_million_tokens: float
    usd_per_million_input: float  # split like the API's prices
    usd_per_million_output: float
    api_usd_per_hour: float
    fleet_over_api: float


def estimate(throughput: Throughput, gpus: int, usd_per_gpu_hour: float, api: ApiPrice) -> Cost:
    tokens_in = throughput.input_tokens_per_s * SECONDS_PER_HOUR
    tokens_out = throughput.output_tokens_per_s * SECONDS_PER_HOUR
    if tokens_out <= 0:
        raise ThroughputError(f"{throughput.source}: no output tokens per second to price")
    fleet = gpus * usd_per_gpu_hour
    api_hour = (
        tokens_in * api.input_usd_per_million + tokens_out * api.output_usd_per_million
    ) / MILLION
    share = fleet / api_hour
    return Cost(
        fleet_usd_per_hour=fleet,
        usd_per_million_output_all=fleet / tokens_out * MILLION,
        usd_per_million_tokens=fleet / (tokens_in + tokens_out) * MILLION,
        usd_per_million_input=share * api.input_usd_per_million,
        usd_per_million_output=share * api.output_usd_per_million,
        api_usd_per_hour=api_hour,
        fleet_over_api=share,
    )


def read_throughput(path: Path, side: str | None = None) -> Throughput:
    """Tokens per second from a `loadtest run` summary.json, a `loadtest batch` summary, or a
    `loadtest compare` compare.json (then `side` is a or b); a run or compare directory works
    too."""
    if path.is_dir():
        for name in ("compare.json", "summary.json"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise ThroughputError(f"{path}: no summary.json or compare.json in this directory")
    try:
        document = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ThroughputError(f"{path}: cannot read it as JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ThroughputError(f"{path}: not a summary")
    where = str(path)
    if "a" in document and "b" in document:
        if side not in ("a", "b"):
            raise ThroughputError(
                f"{path} is a comparison: choose its side with --side a or --side b"
            )
        label = _env_name(document[side])
        document = document[side]
        where = f"{path}, side {side}" + (f" ({label})" if label else "")
    elif side is not None:
        raise ThroughputError(f"--side applies to a compare.json; {path} is one run")
    figures = document.get("figures") if isinstance(document, dict) else None
    if not isinstance(figures, dict):
        raise ThroughputError(f"{path}: no `figures` (is it a loadtest summary?)")
    return Throughput(
        input_tokens_per_s=_rate(figures, "prompt_tokens_per_s", path),
        output_tokens_per_s=_rate(figures, "output_tokens_per_s", path),
        source=where,
    )


def _env_name(side: Any) -> str | None:
    environment = side.get("environment") if isinstance(side, dict) else None
    name = environment.get("name") if isinstance(environment, dict) else None
    return name if isinstance(name, str) else None


def _rate(figures: dict[str, Any], name: str, path: Path) -> float:
    value = figures.get(name)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ThroughputError(f"{path}: figures.{name} is missing or not a rate: {value!r}")
    return float(value)
