"""Bootstrap confidence intervals for the difference (B - A) of every summary figure.

- Paired: both sides ran the same schedule, so request i is the same request on each side;
  resampling draws the same request positions on both sides, which removes the noise of the
  request mix from the difference.
- Repeats: a side may hold several runs of the schedule (A B B A). A resample first draws
  runs (the same run numbers on both sides), then blocks of requests inside each, and a figure
  is computed over the pooled requests. With few runs that bootstrap understates how much
  runs differ (two runs resampled have half the spread of two runs drawn anew), so the
  interval is widened to at least the t-interval of the per-run differences (K - 1 degrees
  of freedom: with two runs, 12.7 standard errors): it holds the sampling noise inside a run
  and the spread between runs.
- Dependence: requests of one run are not independent (a queue, or a noisy neighbour on the
  machine, slows many in a row). Resampling blocks of consecutive requests understates that
  when the dependence is long next to the run (an A/A test with noise correlated over ~50 of
  1,500 requests called a winner on p50 a quarter of the time with blocks of 100), so the
  bootstrap draws requests one by one and each figure's interval is widened by the square
  root of the integrated autocorrelation time of its influence series (for a percentile,
  whether each request is below it on B minus on A; for a mean or a rate, B's value minus
  A's), measured on the run with Sokal's automatic window (`inflation`).
- Failures count against their side: a failed or cut request is infinitely slow in latency
  percentiles (censored), so a side cannot look faster by failing its slow requests. Means and
  maxima are over successful requests.
- A side is better on a figure only when the interval excludes 0 and the difference is at
  least `min_effect` (5%) of A's value; a percentile with fewer than 10 requests beyond it is
  flagged imprecise. Maxima get no interval: a resample never holds a value above the observed
  maximum, so the bootstrap cannot bound it.

Inter-token gaps are resampled with their requests: each request's gaps are kept as a
histogram over fine logarithmic bins (0.25% wide), so a resample's gaps are a weighted sum of
histograms (one matrix product). Point estimates use the exact gaps.
"""

import warnings
from collections.abc import Collection, Sequence
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
MIN_EFFECT = 0.05
# The fewest independent stretches a run is taken to hold (caps the widening).
MIN_STRETCHES = 20
# A percentile with fewer requests than this beyond it is imprecise (p99 needs 1,000).
TAIL_MIN = 10
# Student's t, 97.5th percentile, by degrees of freedom 1..30 (beyond, 2.0: 2.04 at 30,
# 1.98 at 120).
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t975(df: int) -> float:
    """Student's t at 97.5% for `df` (at least 1) degrees of freedom: a 95% interval of a
    mean of df + 1 values is the mean +- t975(df) x their standard deviation / sqrt(df + 1)."""
    if df < 1:
        raise ValueError("a t-interval needs at least two values")
    return _T975[df - 1] if df <= len(_T975) else 2.0


class Record(Protocol):
    """What the statistics read from a request record (loadtest.drive.records.RequestRecord)."""

    @property
    def index(self) -> int: ...
    @property
    def scheduled_s(self) -> float: ...
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
    """A side's runs of one schedule as (runs x requests) arrays, requests by index.

    Latencies are +inf where a request failed (or is missing from a run)."""

    index: Indices
    scheduled_s: Floats
    ok: NDArray[np.bool_]
    good: NDArray[np.bool_]
    ttft: Floats
    tpot: Floats
    e2e: Floats
    output_tokens: Floats
    # Every inter-token gap of successful requests, and its request's flat position
    # (run * requests + position).
    itl: Floats
    itl_owner: Indices
    # Seconds each run's rates are divided by.
    duration_s: float

    @classmethod
    def of(cls, records: Sequence[Record], *, duration_s: float, slo: Slo | None = None) -> "Side":
        """One run."""
        return cls.of_runs([records], duration_s=duration_s, slo=slo)

    @classmethod
    def of_runs(
        cls, runs: Sequence[Sequence[Record]], *, duration_s: float, slo: Slo | None = None
    ) -> "Side":
        """Several runs of one schedule; a request missing from a run counts as failed."""
        slo = slo or Slo()
        indices = sorted({r.index for run in runs for r in run})
        where = {index: pos for pos, index in enumerate(indices)}
        shape = (len(runs), len(indices))
        ok = np.zeros(shape, dtype=bool)
        cols = {name: np.full(shape, np.nan) for name in ("ttft", "tpot", "e2e", "tokens")}
        scheduled = np.zeros(len(indices))
        gaps: list[float] = []
        owners: list[int] = []
        for k, run in enumerate(runs):
            for r in run:
                pos = where[r.index]
                scheduled[pos] = r.scheduled_s
                if r.error_kind is not None:
                    continue
                ok[k, pos] = True
                for name, value in (
                    ("ttft", r.ttft_s),
                    ("tpot", r.tpot_s),
                    ("e2e", r.e2e_s),
                    ("tokens", r.output_tokens),
                ):
                    if value is not None:
                        cols[name][k, pos] = value
                gaps.extend(r.itl_s)
                owners.extend([k * len(indices) + pos] * len(r.itl_s))
        ttft, tpot = _censor(cols["ttft"], ok), _censor(cols["tpot"], ok)
        good = ok.copy()
        # A request without a TPOT (one output token) cannot miss the TPOT target.
        if slo.ttft_s is not None:
            good &= ttft <= slo.ttft_s
        if slo.tpot_s is not None:
            good &= np.isnan(tpot) | (tpot <= slo.tpot_s)
        return cls(
            index=np.array(indices, dtype=np.int64),
            scheduled_s=scheduled,
            ok=ok,
            good=good,
            ttft=ttft,
            tpot=tpot,
            e2e=_censor(cols["e2e"], ok),
            output_tokens=np.where(ok, np.nan_to_num(cols["tokens"]), 0.0),
            itl=np.array(gaps, dtype=np.float64),
            itl_owner=np.array(owners, dtype=np.int64),
            duration_s=duration_s,
        )

    @property
    def runs(self) -> int:
        return int(self.ok.shape[0])

    def __len__(self) -> int:
        return len(self.index)


def _censor(values: Floats, ok: NDArray[np.bool_]) -> Floats:
    """+inf where the request failed; NaN stays where a success has no such figure."""
    return np.where(ok, values, np.inf)


@dataclass(frozen=True)
class Figure:
    name: str
    label: str
    unit: str
    better: Better
    # "ok", "good", "tokens", "errors" (rates) or a latency column with a statistic.
    metric: str
    stat: str = ""

    @property
    def quantile(self) -> float | None:
        return float(self.stat[1:]) / 100 if self.stat.startswith("p") else None


@dataclass(frozen=True)
class Difference:
    figure: str
    a: float
    b: float
    diff: float
    low: float
    high: float
    better: Better
    min_effect: float = MIN_EFFECT
    # Fewest requests beyond this percentile on either side (pooled); None: not a percentile.
    tail: int | None = None

    @property
    def significant(self) -> bool:
        return bool(self.low > 0 or self.high < 0)

    @property
    def relative(self) -> float | None:
        if not np.isfinite(self.a) or self.a == 0 or np.isnan(self.diff):
            return None
        return self.diff / abs(self.a)

    @property
    def imprecise(self) -> bool:
        return self.tail is not None and self.tail < TAIL_MIN

    @property
    def large_enough(self) -> bool:
        """At least `min_effect` of A's value (an infinite difference always is)."""
        if np.isinf(self.diff) or (self.a == 0 and self.diff != 0):
            return True
        rel = self.relative
        return rel is not None and abs(rel) >= self.min_effect

    @property
    def winner(self) -> Literal["a", "b"] | None:
        """The better side: the interval excludes 0 and the effect is large enough."""
        if not self.significant or not self.large_enough:
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
            "censored": bool(np.isinf(self.a) or np.isinf(self.b)),
            "tail_requests": self.tail,
            "imprecise": self.imprecise,
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


class _Flat:
    """A side's columns flattened over runs, indexed by flat positions."""

    def __init__(self, side: Side) -> None:
        self.side = side
        self.cols = {
            name: np.asarray(getattr(side, name)).reshape(-1)
            for name in ("ok", "good", "ttft", "tpot", "e2e", "output_tokens")
        }

    def rows(self, fig: Figure, idx: Indices) -> Floats:
        """The figure on each row of resampled flat positions."""
        side, cols = self.side, self.cols
        seconds = side.duration_s * idx.shape[1] / max(len(side), 1)
        if fig.metric in ("ok", "good"):
            return np.asarray(cols[fig.metric][idx].sum(axis=1) / seconds)
        if fig.metric == "tokens":
            return np.asarray(cols["output_tokens"][idx].sum(axis=1) / seconds)
        if fig.metric == "errors":
            return np.asarray(1.0 - cols["ok"][idx].mean(axis=1))
        return _latency(cols[fig.metric][idx], fig)


def _latency(values: Floats, fig: Figure) -> Floats:
    """A latency statistic per row; percentiles count failures (+inf), means and maxima
    are over successes (finite values)."""
    with warnings.catch_warnings():  # a resample may hold only failed requests
        warnings.simplefilter("ignore", RuntimeWarning)
        if fig.stat in ("mean", "max"):
            finite = np.where(np.isfinite(values), values, np.nan)
            reduce = np.nanmean if fig.stat == "mean" else np.nanmax
            return np.asarray(reduce(finite, axis=1))
        q = float(fig.stat[1:])
        present = ~np.isnan(values)  # NaN: a success without this figure
        if present.all():
            out = np.percentile(values, q, axis=1)
            censored = np.isinf(values).any(axis=1)
            if censored.any():  # interpolating towards +inf is undefined: use the sample
                out[censored] = np.percentile(values[censored], q, axis=1, method="inverted_cdf")
            return np.asarray(out)
        return np.asarray(np.nanpercentile(values, q, axis=1, method="inverted_cdf"))


def _tail(side: Side, fig: Figure) -> int | None:
    """Requests (pooled over runs) beyond the figure's percentile."""
    q = fig.quantile
    if q is None or fig.metric not in ("ttft", "tpot", "e2e"):
        return None
    values = np.asarray(getattr(side, fig.metric))
    count = int((~np.isnan(values)).sum())
    return int(count * (1 - q))


@dataclass(frozen=True)
class _GapHistograms:
    """Per-request histograms of inter-token gaps over bins shared by both sides."""

    centers: Floats
    per_request: NDArray[np.float32]  # (flat positions, bins)

    @classmethod
    def of(cls, side: Side, edges: Floats) -> "_GapHistograms":
        bins = len(edges) - 1
        flat = side.ok.size
        where = np.clip(np.searchsorted(edges, side.itl, side="right") - 1, 0, bins - 1)
        counts = np.bincount(side.itl_owner * bins + where, minlength=flat * bins)
        centers = np.sqrt(edges[:-1] * edges[1:])
        return cls(centers, counts.reshape(flat, bins).astype(np.float32))

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


def _exact(fig: Figure, flat: _Flat) -> float:
    """The figure on all requests of all runs (inter-token gaps taken exactly)."""
    side = flat.side
    if fig.metric != "itl":
        return float(flat.rows(fig, np.arange(side.ok.size, dtype=np.int64)[None, :])[0])
    if len(side.itl) == 0:
        return float("nan")
    if fig.stat == "mean":
        return float(side.itl.mean())
    if fig.stat == "max":
        return float(side.itl.max())
    return float(np.percentile(side.itl, float(fig.stat[1:])))


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


def flat_indices(
    runs: int, n: int, resamples: int, rng: np.random.Generator, block: int
) -> Indices:
    """(resamples, runs * n) flat positions: `runs` runs drawn with replacement, then blocks
    of requests inside each."""
    chosen = rng.integers(0, runs, size=(resamples, runs, 1))
    inner = block_indices(n, resamples * runs, rng, block).reshape(resamples, runs, n)
    return np.asarray((chosen * n + inner).reshape(resamples, runs * n), dtype=np.int64)


def default_block(n: int) -> int:
    """Block length: about n^(1/3), the usual rate for block-bootstrap variance."""
    root: float = n ** (1 / 3)
    return max(1, round(root))


def inflation(fig: Figure, a: Side, b: Side) -> float:
    """How much wider than an independent-request bootstrap the figure's interval must be:
    sqrt of the integrated autocorrelation time of the figure's paired influence series."""
    if fig.stat == "max":
        return 1.0
    if fig.metric == "itl":  # gaps move with their requests' TPOT
        fig = Figure(fig.name, fig.label, fig.unit, fig.better, "tpot", fig.stat)
    series = _influence(fig, a, b)
    series = series[np.isfinite(series)]
    # A run shorter than ~20 autocorrelation times cannot say how much its figure would
    # vary (a queue that grows through the whole run): the widening stops there.
    tau = min(autocorrelation_time(series), max(1.0, len(series) / MIN_STRETCHES))
    return float(np.sqrt(max(1.0, tau)))


def _influence(fig: Figure, a: Side, b: Side) -> Floats:
    def per_side(side: Side) -> Floats:
        if fig.metric in ("ok", "good"):
            return np.asarray(getattr(side, fig.metric), dtype=float).reshape(-1)
        if fig.metric == "tokens":
            return np.asarray(side.output_tokens).reshape(-1)
        if fig.metric == "errors":
            return np.asarray(~side.ok, dtype=float).reshape(-1)
        values = np.asarray(getattr(side, fig.metric)).reshape(-1)
        q = fig.quantile
        if q is None:  # a mean: the values themselves (failures are not in it)
            return np.where(np.isfinite(values), values, np.nan)
        present = values[~np.isnan(values)]
        if not len(present):
            return np.full(len(values), np.nan)
        cut = np.percentile(present, q * 100, method="inverted_cdf")
        return np.where(np.isnan(values), np.nan, (values <= cut).astype(float))

    if a.ok.shape == b.ok.shape and bool((a.index == b.index).all()):
        return per_side(b) - per_side(a)
    return per_side(b) if len(b) >= len(a) else per_side(a)


def autocorrelation_time(series: Floats, window: float = 10.0) -> float:
    """1 + 2 sum of the autocorrelations, summed up to the first lag M >= window x the sum so
    far (Sokal's automatic window); 1 for independent values."""
    n = len(series)
    if n < 20 or series.std() == 0:
        return 1.0
    centred = series - series.mean()
    spectrum = np.fft.rfft(centred, n=2 * n)
    acf = np.fft.irfft(spectrum * np.conj(spectrum))[:n]
    acf /= acf[0]
    taus = 2 * np.cumsum(acf) - 1
    lags = np.arange(n)
    stop = np.flatnonzero(lags >= window * taus)
    return float(taus[stop[0]] if len(stop) else taus[-1])


def compare_sides(
    a: Side,
    b: Side,
    *,
    resamples: int = 1000,
    seed: int = 0,
    block: int | None = None,
    confidence: float = 0.95,
    min_effect: float = MIN_EFFECT,
    only: Collection[str] | None = None,
    widen: bool = True,
) -> list[Difference]:
    """Every figure of A and B (or those named in `only`), their difference B - A and its
    interval. `block` > 1 resamples blocks of consecutive requests; `widen` applies the
    autocorrelation inflation (both for studying the method; the defaults are the method)."""
    figs = [f for f in figures() if only is None or f.name in only]
    if len(a) == 0 or len(b) == 0:
        nan = float("nan")
        return [Difference(f.name, nan, nan, nan, nan, nan, f.better) for f in figs]
    rng = np.random.default_rng(seed)
    paired = a.runs == b.runs and len(a) == len(b) and bool((a.index == b.index).all())
    length = block or 1
    flat_a, flat_b = _Flat(a), _Flat(b)
    have_gaps = len(a.itl) > 0 and len(b.itl) > 0
    edges = _gap_edges(a, b) if have_gaps else None
    hist_a = _GapHistograms.of(a, edges) if edges is not None else None
    hist_b = _GapHistograms.of(b, edges) if edges is not None else None
    diffs: dict[str, list[Floats]] = {f.name: [] for f in figs}
    chunk = max(1, _CHUNK_ELEMENTS // max(a.ok.size, b.ok.size))
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        idx_a = flat_indices(a.runs, len(a), rows, rng, length)
        idx_b = idx_a if paired else flat_indices(b.runs, len(b), rows, rng, length)
        for fig in figs:
            if fig.metric != "itl":
                sample = _minus(flat_b.rows(fig, idx_b), flat_a.rows(fig, idx_a))
            elif hist_a is not None and hist_b is not None:
                sample = hist_b.rows(fig, idx_b) - hist_a.rows(fig, idx_a)
            else:
                continue
            diffs[fig.name].append(sample)
    tail = (1 - confidence) / 2 * 100
    out = []
    for fig in figs:
        value_a, value_b = _exact(fig, flat_a), _exact(fig, flat_b)
        diff = float(_minus(np.array([value_b]), np.array([value_a]))[0])
        sample = np.concatenate(diffs[fig.name]) if diffs[fig.name] else np.array([])
        sample = sample[~np.isnan(sample)]
        low, high = (
            np.percentile(sample, [tail, 100 - tail], method="inverted_cdf")
            if len(sample)
            else (np.nan, np.nan)
        )
        if widen and np.isfinite(diff):
            factor = inflation(fig, a, b)
            low, high = diff - (diff - low) * factor, diff + (high - diff) * factor
        if paired and a.runs > 1 and fig.metric != "itl":
            spread = _between_runs(fig, flat_a, flat_b, confidence)
            low, high = min(low, diff - spread), max(high, diff + spread)
        if fig.stat == "max":  # the bootstrap cannot bound a maximum: no interval, no verdict
            low, high = np.nan, np.nan
        tails = [t for t in (_tail(a, fig), _tail(b, fig)) if t is not None]
        out.append(
            Difference(
                fig.name,
                value_a,
                value_b,
                diff,
                float(low),
                float(high),
                fig.better,
                min_effect,
                min(tails) if tails else None,
            )
        )
    return out


def _between_runs(fig: Figure, a: _Flat, b: _Flat, confidence: float) -> float:
    """Half-width of the t-interval of the per-run differences (run k of B - run k of A)."""
    if confidence != 0.95:
        raise ValueError("repeated runs are combined at 95% confidence only")
    runs, n = a.side.runs, len(a.side)
    positions = np.arange(runs * n, dtype=np.int64).reshape(runs, n)
    per_run = _minus(b.rows(fig, positions), a.rows(fig, positions))
    per_run = per_run[~np.isnan(per_run)]
    if len(per_run) < 2:
        return 0.0
    if np.isinf(per_run).any():
        return float("inf")
    t = t975(len(per_run) - 1)
    return float(t * per_run.std(ddof=1) / np.sqrt(len(per_run)))


def _minus(b: Floats, a: Floats) -> Floats:
    """b - a, where two infinities (both sides' figure made of failures) are a tie."""
    with np.errstate(invalid="ignore"):
        out = b - a
    return np.where(np.isinf(a) & np.isinf(b) & (a == b), 0.0, out)
