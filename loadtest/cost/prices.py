"""GPU and API prices: the table shipped beside this module (prices.yaml, every price with its
provider, date and source), a user's file over it, or a price given on the command line."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SHIPPED = Path(__file__).with_name("prices.yaml")
USER_FILE = Path("turnout-prices.yaml")
_SOURCE_FIELDS = ("provider", "date", "url", "via", "note")


class PricesError(ValueError):
    """A prices file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class Source:
    provider: str
    date: str
    url: str | None = None
    via: str | None = None
    note: str | None = None

    def cite(self) -> str:
        parts = [p for p in (self.url, f"via {self.via}" if self.via else None) if p]
        return ", ".join(parts) or "no source given"


@dataclass(frozen=True, slots=True)
class GpuPrice:
    usd_per_hour: float
    offer: str
    source: Source

    def label(self) -> str:
        offer = "" if self.offer == "on-demand" else f", {self.offer}"
        return f"{self.source.provider}{offer}"


@dataclass(frozen=True, slots=True)
class Gpu:
    key: str
    name: str
    prices: tuple[GpuPrice, ...]  # cheapest first


@dataclass(frozen=True, slots=True)
class ApiPrice:
    key: str
    name: str
    input_usd_per_million: float
    output_usd_per_million: float
    source: Source


@dataclass(frozen=True)
class PriceTable:
    gpus: dict[str, Gpu]
    apis: dict[str, ApiPrice]

    def gpu(self, name: str) -> Gpu:
        found = self.gpus.get(_key(name))
        if found is None:
            raise PricesError(
                f"unknown GPU {name!r}; known: {', '.join(g.key for g in self.gpus.values())}"
            )
        return found

    def api(self, name: str) -> ApiPrice:
        found = self.apis.get(_key(name))
        if found is None:
            raise PricesError(
                f"unknown API {name!r}; known: {', '.join(a.key for a in self.apis.values())}"
            )
        return found


def _key(name: str) -> str:
    """H100, h100 and 'rtx pro 6000' / RTX_PRO_6000 name the same entry."""
    return name.strip().lower().replace("_", "-").replace(" ", "-")


def load_prices(user_file: Path | None = None) -> PriceTable:
    """The shipped table, with the entries of `user_file` (or ./turnout-prices.yaml when it
    exists) replacing or adding GPUs and APIs of the same name."""
    table = _parse(SHIPPED)
    path = user_file if user_file is not None else (USER_FILE if USER_FILE.exists() else None)
    if path is None:
        return table
    if not path.is_file():
        raise PricesError(f"{path}: no such prices file")
    mine = _parse(path)
    return PriceTable({**table.gpus, **mine.gpus}, {**table.apis, **mine.apis})


def _parse(path: Path) -> PriceTable:
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise PricesError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(document, dict):
        raise PricesError(f"{path}: must be a mapping with `gpus` and/or `apis`")
    unknown = sorted(set(document) - {"gpus", "apis"})
    if unknown:
        raise PricesError(f"{path}: unknown section {unknown[0]!r}; allowed: gpus, apis")
    gpus = {
        _key(name): _gpu(path, str(name), entry)
        for name, entry in _mapping(path, "gpus", document.get("gpus") or {}).items()
    }
    apis = {
        _key(name): _api(path, str(name), entry)
        for name, entry in _mapping(path, "apis", document.get("apis") or {}).items()
    }
    return PriceTable(gpus, apis)


def _mapping(path: Path, where: str, value: Any) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise PricesError(f"{path}: {where} must be a mapping of names to entries")
    return value


def _gpu(path: Path, name: str, entry: Any) -> Gpu:
    where = f"gpus.{name}"
    entry = _mapping(path, where, entry)
    prices = entry.get("prices")
    if not isinstance(prices, list) or not prices:
        raise PricesError(f"{path}: {where}.prices must be a non-empty list")
    parsed = []
    for i, price in enumerate(prices):
        at = f"{where}.prices[{i}]"
        price = _mapping(path, at, price)
        _only(path, at, price, ("usd", "offer", *_SOURCE_FIELDS))
        parsed.append(
            GpuPrice(
                usd_per_hour=_positive(path, f"{at}.usd", price.get("usd")),
                offer=str(price.get("offer") or "on-demand"),
                source=_source(path, at, price),
            )
        )
    return Gpu(
        name, str(entry.get("name") or name), tuple(sorted(parsed, key=lambda p: p.usd_per_hour))
    )


def _api(path: Path, name: str, entry: Any) -> ApiPrice:
    where = f"apis.{name}"
    entry = _mapping(path, where, entry)
    _only(path, where, entry, ("name", "input", "output", *_SOURCE_FIELDS))
    return ApiPrice(
        key=name,
        name=str(entry.get("name") or name),
        input_usd_per_million=_positive(path, f"{where}.input", entry.get("input")),
        output_usd_per_million=_positive(path, f"{where}.output", entry.get("output")),
        source=_source(path, where, entry),
    )


def _only(path: Path, where: str, entry: dict[Any, Any], allowed: tuple[str, ...]) -> None:
    for field in entry:
        if field not in allowed:
            raise PricesError(
                f"{path}: {where}: unknown field {field!r}; allowed: {', '.join(allowed)}"
            )


def _positive(path: Path, where: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise PricesError(f"{path}: {where} must be a number greater than 0, got {value!r}")
    return float(value)


def _source(path: Path, where: str, entry: dict[Any, Any]) -> Source:
    provider, date = entry.get("provider"), entry.get("date")
    if not isinstance(provider, str) or not provider:
        raise PricesError(f"{path}: {where}.provider is required (who charges this price)")
    if date is None:
        raise PricesError(
            f"{path}: {where}.date is required (when the price was read; n.d. if unknown)"
        )
    optional = {f: entry.get(f) for f in ("url", "via", "note")}
    return Source(
        provider, str(date), **{k: str(v) if v is not None else None for k, v in optional.items()}
    )
