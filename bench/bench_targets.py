"""bench/gateway_bench.py's tables: every phase of every proxy, and the gateway's speed
targets (issue 12) with pass or fail, each figure a median over rounds of values taken
within one round (a ratio or a difference of runs made back to back)."""

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from raw_client import PhaseResult

# (name, concurrency, streaming)
PHASES = [
    ("c=1", 1, False),
    ("c=1 stream", 1, True),
    ("c=64", 64, False),
    ("c=64 stream", 64, True),
]
# kind -> one dict per round: phase name -> result
Runs = dict[str, list[dict[str, PhaseResult]]]
GATEWAY = "gateway"
FLOOR = "relay-asgi"


def p50(r: PhaseResult) -> float:
    return r.pct(r.latencies, 0.5)


def p99(r: PhaseResult) -> float:
    return r.pct(r.latencies, 0.99)


def ttfb50(r: PhaseResult) -> float:
    return r.pct(r.first_bytes, 0.5)


def cpu_per_request(r: PhaseResult) -> float:
    return r.cpu / max(1, r.served)


def cpu_per_chunk(rnd: dict[str, PhaseResult], concurrency: int) -> float:
    """(CPU per streamed request - CPU per plain request) / events per stream."""
    stream, plain = rnd[f"c={concurrency} stream"], rnd[f"c={concurrency}"]
    events = stream.chunks / max(1, len(stream.latencies))
    return (cpu_per_request(stream) - cpu_per_request(plain)) / max(1.0, events)


def print_phases(runs: Runs) -> None:
    med = statistics.median
    header = (
        f"{'proxy':<14} {'phase':<12} {'p50 ms':>8} {'p99 ms':>8} {'added p50':>10} "
        f"{'TTFB p50':>9} {'req/s':>8} {'err':>5} {'CPU µs/req':>11} {'µs/chunk':>9}"
    )
    print(header)
    print("-" * len(header))
    direct = runs["direct"]
    for label, per_round in runs.items():
        kind = label if "@" not in label else label.split("@")[0] + "@" + Path(label).name
        for name, concurrency, stream in PHASES:
            rs = [r[name] for r in per_round]
            pairs = zip(per_round, direct, strict=True)
            added = med((p50(r[name]) - p50(d[name])) * 1e3 for r, d in pairs)
            ttfb = med(ttfb50(r) for r in rs) * 1e3 if stream else math.nan
            proxied = label != "direct"
            chunk = med(cpu_per_chunk(r, concurrency) for r in per_round) * 1e6
            print(
                f"{kind:<14} {name:<12} {med(p50(r) for r in rs) * 1e3:8.3f} "
                f"{med(p99(r) for r in rs) * 1e3:8.3f} "
                f"{f'{added:+10.3f}' if proxied else '':>10} {ttfb:9.3f} "
                f"{med(r.rps for r in rs):8.0f} {sum(r.errors for r in rs):5d} "
                f"{f'{med(cpu_per_request(r) for r in rs) * 1e6:11.0f}' if proxied else '':>11} "
                f"{f'{chunk:9.1f}' if proxied and stream else '':>9}"
            )
    print(
        "\nadded p50: proxied minus direct, same round. CPU: the proxy process's utime+stime "
        "over the phase / requests served.\nµs/chunk: (CPU per streamed request - CPU per "
        "plain request) / events per stream. Medians over rounds."
    )


@dataclass(frozen=True)
class Target:
    name: str
    unit: str
    # One value per round, from that round's results of a proxy and of direct.
    value: Callable[[dict[str, PhaseResult], dict[str, PhaseResult]], float]
    passes: Callable[[float], bool]
    goal: str


def _added_p50(rnd: dict[str, PhaseResult], direct: dict[str, PhaseResult]) -> float:
    return (p50(rnd["c=1"]) - p50(direct["c=1"])) * 1e3


def _added_p99(rnd: dict[str, PhaseResult], direct: dict[str, PhaseResult]) -> float:
    return (p99(rnd["c=1"]) - p99(direct["c=1"])) * 1e3


def _stream_gap(rnd: dict[str, PhaseResult], direct: dict[str, PhaseResult]) -> float:
    """What the proxy adds to a stream's first event, minus what it adds to a whole answer."""
    stream_added = (ttfb50(rnd["c=1 stream"]) - ttfb50(direct["c=1 stream"])) * 1e3
    return stream_added - _added_p50(rnd, direct)


def _per_core(rnd: dict[str, PhaseResult], direct: dict[str, PhaseResult]) -> float:
    return 1.0 / max(1e-9, cpu_per_request(rnd["c=64"]))


def _per_chunk(rnd: dict[str, PhaseResult], direct: dict[str, PhaseResult]) -> float:
    return cpu_per_chunk(rnd, 64) * 1e6


# Streams' first byte "the same as non-streams'": within 50 µs.
STREAM_GAP_MS = 0.05

TARGETS = [
    Target("added p50, c=1", "ms", _added_p50, lambda v: v <= 0.30, "<= 0.30"),
    Target("added p99, c=1", "ms", _added_p99, lambda v: v <= 0.60, "<= 0.60"),
    Target(
        "stream first event added - whole answer added, c=1",
        "ms",
        _stream_gap,
        lambda v: v <= STREAM_GAP_MS,
        f"<= {STREAM_GAP_MS:.2f}",
    ),
    Target("non-streaming req/s per core, c=64", "", _per_core, lambda v: v >= 6000, ">= 6000"),
    Target("CPU per streamed chunk, c=64", "µs", _per_chunk, lambda v: v <= 10, "<= 10"),
]


def print_targets(runs: Runs) -> None:
    if GATEWAY not in runs:
        return
    gw, direct = runs[GATEWAY], runs["direct"]
    floor = runs.get(FLOOR)
    print(
        f"\nTargets (issue 12), gateway with everything on; '{FLOOR}' is the bare plain-ASGI "
        "aiohttp relay, for reference.\nEach value is the median over rounds; per round in "
        "brackets.\n"
    )
    header = f"{'target':<52} {'goal':>10} {'gateway':>10} {FLOOR:>11}  {'':<4} per round"
    print(header)
    print("-" * len(header))
    for target in TARGETS:
        values = [target.value(r, d) for r, d in zip(gw, direct, strict=True)]
        value = statistics.median(values)
        ref = ""
        if floor is not None:
            pairs = zip(floor, direct, strict=True)
            ref = f"{_fmt(statistics.median(target.value(r, d) for r, d in pairs)):>11}"
        _row(target.name, f"{target.goal} {target.unit}", value, ref, target.passes(value), values)
    if floor is not None:
        ratios = [
            cpu_per_request(r["c=64"]) / max(1e-9, cpu_per_request(f["c=64"]))
            for r, f in zip(gw, floor, strict=True)
        ]
        ratio = statistics.median(ratios)
        _row(f"CPU per request / {FLOOR}'s, c=64", "<= 1.25 x", ratio, "1", ratio <= 1.25, ratios)
    else:
        print(f"CPU per request / {FLOOR}'s: not measured (add {FLOOR} to --proxies)")


def _row(name: str, goal: str, value: float, ref: str, ok: bool, values: list[float]) -> None:
    rounds = ", ".join(_fmt(v) for v in values)
    verdict = "PASS" if ok else "FAIL"
    print(f"{name:<52} {goal:>10} {_fmt(value):>10} {ref:>11}  {verdict:<4} [{rounds}]")


def _fmt(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
