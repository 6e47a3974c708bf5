"""Bootstrap confidence intervals for the difference (B - A) of every summary figure.

Both sides of a comparison run the same schedule, so request i is the same request on
each side: resampling picks the same request indices on both sides (a paired bootstrap),
which removes the noise of the request mix from the difference. Requests in one run are
not independent (a queue that builds up delays its neighbours), so indices are drawn in
circular blocks of consecutive requests rather than one by one.

Inter-token gaps are resampled with their requests too. There are hundreds of thousands
of them, so each request's gaps are kept as a histogram over fine logarithmic bins
(0.25% wide) and a resample's gaps are the multiplicity-weighted sum of those histograms:
one matrix product instead of a sort per resample. Point estimates use the exact gaps.

A difference is significant when its 95% interval excludes 0. Maxima get no interval: a
resample never holds a value above the observed maximum, so the bootstrap cannot bound it.
"""

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from loadtest.workload.model import Slo

Better = Literal["lower", "higher"]
Floats = NDArray[np.float64]
Indices = NDArray[np.int64]
# Most index elements one chunk of resamples may hold, to bound memory.
_CHUNK_ELEMENTS = 4_000_000
_GAP_BINS_PER_DECADE = 920  # bins 0.25% wide
_STATS = ("mean", "p50", "p90", "p99", "max")


class Record(Protocol):
    """What the statistics read from a request record (loadtest.drive.records.RequestRecord)."""

    @property
    def index(self) -> int: ...
    @property
    def error_kind(self) -> str | None: ...
    @property
    def ttft_s(self) -> float | None: ...
    @property
    def itl_s(self) -> tuple[float, ...]: ...
    @property
    def tpot_s(self) -> float | None: ...
    @property
    def e2e_s(self) -> float | None: ...
    @property
    def output_tokens(self) -> int | None: ...


@dataclass(frozen=True)
class Side:
    """One run's records as arrays, ordered by request index; NaN where not measured."""

    index: Indices
    ok: NDArray[np.bool_]
    good: NDArray[np.bool_]
    ttft: Floats
    tpot: Floats
    e2e: Floats
    output_tokens: Floats
    # Every inter-token gap of successful requests, and the position of its request.
    itl: Floats
    itl_owner: Indices
    duration_s: float

    @classmethod
    def of(cls, records: Sequence[Record], *, duration_s: float, slo: Slo | None = None) -> "Side":
        slo = slo or Slo()
        recs = sorted(records, key=lambda r: r.index)

        def col(name: str) -> Floats:
            values = [getattr(r, name) for r in recs]
            return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

        ok = np.array([r.error_kind is None for r in recs], dtype=bool)
        ttft, tpot = col("ttft_s"), col("tpot_s")
        good = ok.copy()
        # A request without a TPOT (one output token) cannot miss the TPOT target.
        if slo.ttft_s is not None:
            good &= ttft <= slo.ttft_s
        if slo.tpot_s is not None:
            good &= np.isnan(tpot) | (tpot <= slo.tpot_s)
        gaps = [(pos, g) for pos, r in enumerate(recs) if r.error_kind is None for g in r.itl_s]
        return cls(
            index=np.array([r.index for r in recs], dtype=np.int64),
            ok=ok,
            good=good,
            ttft=np.where(ok, ttft, np.nan),
            tpot=np.where(ok, tpot, np.nan),
            e2e=np.where(ok, col("e2e_s"), np.nan),
            output_tokens=np.where(ok, np.nan_to_num(col("output_tokens")), 0.0),
            itl=np.array([g for _, g in gaps], dtype=np.float64),
            itl_owner=np.array([pos for pos, _ in gaps], dtype=np.int64),
            duration_s=duration_s,
        )

    def __len__(self) -> int:
        return len(self.index)


@dataclass(frozen=True)
class Figure:
    name: str
    label: str
    unit: str
    better: Better
    # "ok", "good", "tokens", "errors" (rates) or a latency column with a statistic.
    metric: str
    stat: str = ""


@dataclass(frozen=True)
class Difference:
    figure: str
    a: float
    b: float
    diff: float
    low: float
    high: float
    better: Better

    @property
    def significant(self) -> bool:
        return bool(self.low > 0 or self.high < 0)

    @property
    def relative(self) -> float | None:
        if not np.isfinite(self.a) or self.a == 0:
            return None
        return self.diff / self.a

    @property
    def winner(self) -> Literal["a", "b"] | None:
        """The better side when the difference is significant."""
        if not self.significant:
            return None
        return "b" if (self.diff > 0) == (self.better == "higher") else "a"

    def to_dict(self) -> dict[str, Any]:
        return {
            "figure": self.figure,
            "a": _json_float(self.a),
            "b": _json_float(self.b),
            "diff": _json_float(self.diff),
            "ci95": [_json_float(self.low), _json_float(self.high)],
            "relative": _json_float(self.relative),
            "significant": self.significant,
            "better": self.better,
            "winner": self.winner,
        }


def _json_float(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def figures() -> list[Figure]:
    """Every figure compared, in display order."""
    out = [
        Figure("throughput_rps", "throughput", "req/s", "higher", "ok"),
        Figure("goodput_rps", "goodput (meets SLO)", "req/s", "higher", "good"),
        Figure("output_tokens_per_s", "output tokens", "tok/s", "higher", "tokens"),
        Figure("error_rate", "error rate", "", "lower", "errors"),
    ]
    for metric in ("ttft", "itl", "tpot", "e2e"):
        for stat in _STATS:
            out.append(
                Figure(f"{metric}_{stat}_s", f"{metric.upper()} {stat}", "s", "lower", metric, stat)
            )
    return out


def _rows(fig: Figure, side: Side, idx: Indices) -> Floats:
    """The figure on each row of resampled request positions."""
    if fig.metric in ("ok", "good"):
        return np.asarray(getattr(side, fig.metric)[idx].sum(axis=1) / side.duration_s)
    if fig.metric == "tokens":
        return np.asarray(side.output_tokens[idx].sum(axis=1) / side.duration_s)
    if fig.metric == "errors":
        return np.asarray(1.0 - side.ok[idx].mean(axis=1))
    values = getattr(side, fig.metric)[idx]
    finite = ~np.isnan(values)
    if not finite.any():
        return np.full(len(idx), np.nan)
    with warnings.catch_warnings():  # a resample may hold only failed requests
        warnings.simplefilter("ignore", RuntimeWarning)
        if fig.stat == "mean":
            return np.asarray(np.nanmean(values, axis=1))
        if fig.stat == "max":
            return np.asarray(np.nanmax(values, axis=1))
        q = float(fig.stat[1:])
        if finite.all():  # much faster than nanpercentile
            return np.asarray(np.percentile(values, q, axis=1))
        return np.asarray(np.nanpercentile(values, q, axis=1))


def _exact(fig: Figure, side: Side) -> float:
    """The figure on the whole run (inter-token gaps taken exactly)."""
    if fig.metric != "itl":
        return float(_rows(fig, side, np.arange(len(side), dtype=np.int64)[None, :])[0])
    if len(side.itl) == 0:
        return float("nan")
    if fig.stat == "mean":
        return float(side.itl.mean())
    if fig.stat == "max":
        return float(side.itl.max())
    return float(np.percentile(side.itl, float(fig.stat[1:])))


@dataclass(frozen=True)
class _GapHistograms:
    """Per-request histograms of inter-token gaps over bins shared by both sides."""

    centers: Floats
    per_request: NDArray[np.float32]  # (requests, bins)

    @classmethod
    def of(cls, side: Side, edges: Floats) -> "_GapHistograms":
        bins = len(edges) - 1
        where = np.clip(np.searchsorted(edges, side.itl, side="right") - 1, 0, bins - 1)
        flat = np.bincount(side.itl_owner * bins + where, minlength=len(side) * bins)
        centers = np.sqrt(edges[:-1] * edges[1:])
        return cls(centers, flat.reshape(len(side), bins).astype(np.float32))

    def rows(self, fig: Figure, idx: Indices) -> Floats:
        n = self.per_request.shape[0]
        rows = len(idx)
        multiplicity = np.bincount(
            (idx + np.arange(rows)[:, None] * n).ravel(), minlength=rows * n
        ).reshape(rows, n)
        counts = multiplicity.astype(np.float32) @ self.per_request
        total = counts.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            if fig.stat == "mean":
                return np.asarray((counts @ self.centers) / total)
            if fig.stat == "max":
                last = counts.shape[1] - 1 - np.argmax(counts[:, ::-1] > 0, axis=1)
                return np.where(total > 0, self.centers[last], np.nan)
            cum = np.cumsum(counts, axis=1)
            target = total * float(fig.stat[1:]) / 100
            where = np.argmax(cum >= target[:, None], axis=1)
            return np.where(total > 0, self.centers[where], np.nan)


def _gap_edges(a: Side, b: Side) -> Floats:
    gaps = np.concatenate([a.itl, b.itl])
    positive = gaps[gaps > 0]
    low = max(float(positive.min()) if len(positive) else 1e-6, 1e-7)
    high = max(float(gaps.max()), low * 1.01)
    decades = np.log10(high / low)
    count = max(2, int(np.ceil(decades * _GAP_BINS_PER_DECADE)) + 1)
    return np.geomspace(low, high * 1.0001, count)


def block_indices(n: int, resamples: int, rng: np.random.Generator, block: int) -> Indices:
    """(resamples, n) indices of a circular block bootstrap with blocks of `block`."""
    block = max(1, min(block, n))
    blocks = -(-n // block)
    starts = rng.integers(0, n, size=(resamples, blocks, 1))
    idx = (starts + np.arange(block)) % n
    return np.asarray(idx.reshape(resamples, blocks * block)[:, :n], dtype=np.int64)


def default_block(n: int) -> int:
    """Block length: about n^(1/3), the usual rate for block-bootstrap variance."""
    root: float = n ** (1 / 3)
    return max(1, round(root))


def compare_sides(
    a: Side,
    b: Side,
    *,
    resamples: int = 1000,
    seed: int = 0,
    block: int | None = None,
    confidence: float = 0.95,
) -> list[Difference]:
    """Every figure of A and B, their difference B - A and its bootstrap interval."""
    figs = figures()
    if len(a) == 0 or len(b) == 0:
        nan = float("nan")
        return [Difference(f.name, nan, nan, nan, nan, nan, f.better) for f in figs]
    rng = np.random.default_rng(seed)
    paired = len(a) == len(b) and bool((a.index == b.index).all())
    have_gaps = len(a.itl) > 0 and len(b.itl) > 0
    edges = _gap_edges(a, b) if have_gaps else None
    hist_a = _GapHistograms.of(a, edges) if edges is not None else None
    hist_b = _GapHistograms.of(b, edges) if edges is not None else None
    diffs: dict[str, list[Floats]] = {f.name: [] for f in figs}
    chunk = max(1, _CHUNK_ELEMENTS // max(len(a), len(b)))
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        idx_a = block_indices(len(a), rows, rng, block or default_block(len(a)))
        idx_b = (
            idx_a if paired else block_indices(len(b), rows, rng, block or default_block(len(b)))
        )
        for fig in figs:
            if fig.metric != "itl":
                diffs[fig.name].append(_rows(fig, b, idx_b) - _rows(fig, a, idx_a))
            elif hist_a is not None and hist_b is not None:
                diffs[fig.name].append(hist_b.rows(fig, idx_b) - hist_a.rows(fig, idx_a))
    tail = (1 - confidence) / 2 * 100
    out = []
    for fig in figs:
        value_a, value_b = _exact(fig, a), _exact(fig, b)
        sample = np.concatenate(diffs[fig.name]) if diffs[fig.name] else np.array([])
        sample = sample[np.isfinite(sample)]
        low, high = np.percentile(sample, [tail, 100 - tail]) if len(sample) else (np.nan,) * 2
        if fig.stat == "max":  # the bootstrap cannot bound a maximum: no interval, no verdict
            low, high = np.nan, np.nan
        out.append(
            Difference(
                fig.name, value_a, value_b, value_b - value_a, float(low), float(high), fig.better
            )
        )
    return out
