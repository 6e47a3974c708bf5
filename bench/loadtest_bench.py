"""How much one load-generator process sustains with its send lag p99 under 5 ms.

Starts bench/fast_server.py (a streaming server that costs next to nothing) in its own process,
then runs the real generator (`loadtest.drive.runner.run_schedule`, on uvloop) in this one at rising
Poisson rates, two ways:

- requests/s: short streams (--short-tokens chunks, written at once);
- tokens/s: long streams (--long-tokens chunks, one per --step-ms, like a decoding engine).

A rate is sustained when lag p99 < 5 ms, no request fails and every answer is in soon after the
last send (the generator keeps up). Each trial line also gives the generator's CPU per request
and per streamed chunk, and the machine's own timer lag: an idle asyncio loop sleeping to the same
Poisson times, the floor under any client when other processes share the CPUs. The ladder goes
on past a rate that misses only the lag budget (noise), and stops when the generator stops
keeping up. At the end: the best rate within 5 ms, the best within 1 ms of the idle loop's own
p99, and capacity per core (1e6 / CPU us). Goals: 2,000 req/s, 20,000 tokens/s.
--compare-clients also runs one rate of each kind with an aiohttp client
(bench/aiohttp_client.py).

    .venv/bin/python bench/loadtest_bench.py [--duration 5] [--compare-clients] [--pin]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from loadtest.drive.client import Client
from loadtest.drive.runner import LAG_BUDGET_S, run_async, run_schedule
from loadtest.workload import Arrival, LengthDist, Workload
from loadtest.workload.schedule import Schedule, build_schedule

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from aiohttp_client import AiohttpClient  # noqa: E402


@dataclass
class Trial:
    rate: float
    rps: float
    tokens_per_s: float
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    floor_p99_ms: float
    errors: int
    kept_up: bool
    cpu_us_per_request: float
    cpu_us_per_chunk: float

    @property
    def sustained(self) -> bool:
        return self.lag_p99_ms < LAG_BUDGET_S * 1000 and self.errors == 0 and self.kept_up

    @property
    def sustained_over_floor(self) -> bool:
        """Within 1 ms of what an idle loop achieves on this machine right now."""
        return self.lag_p99_ms <= self.floor_p99_ms + 1.0 and self.errors == 0 and self.kept_up

    def line(self) -> str:
        verdict = (
            "ok"
            if self.sustained
            else "over floor+1ms: ok"
            if self.sustained_over_floor
            else "NOT sustained"
        )
        return (
            f"  {self.rate:6.0f} req/s offered: {self.rps:6.0f} req/s {self.tokens_per_s:6.0f} "
            f"tok/s  lag p50/p99/max {self.lag_p50_ms:.2f}/{self.lag_p99_ms:.2f}/"
            f"{self.lag_max_ms:.1f} ms (idle-loop p99 {self.floor_p99_ms:.2f})  errors "
            f"{self.errors}  CPU {self.cpu_us_per_request:.0f} us/req "
            f"{self.cpu_us_per_chunk:.1f} us/chunk  {verdict}"
        )


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(step_ms: float, cpu: int | None) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    argv = [sys.executable, str(HERE / "fast_server.py"), "--port", str(port)]
    argv += ["--step-ms", str(step_ms)]
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    proc = subprocess.Popen(argv, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/health", timeout=1.0)
            return proc, url
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("fast_server did not start")


def bench_workload(rate: float, tokens: int, duration: float) -> Workload:
    return Workload(
        name="bench",
        description="",
        models=(("bench-model", 1.0),),
        prompt_tokens=LengthDist("fixed", value=64),
        output_tokens=LengthDist("fixed", value=tokens),
        arrival=Arrival("poisson", rate=rate),
        duration_s=duration,
        timeout_s=30.0,
    )


async def idle_loop_lag(schedule: Schedule) -> list[float]:
    """How late a loop that does nothing else wakes at the schedule's send times."""
    clock = time.perf_counter
    start = clock()
    lags = []
    for request in schedule.requests:
        delay = start + request.at_s - clock()
        if delay > 0.0002:
            await asyncio.sleep(delay)
        lags.append(clock() - start - request.at_s)
    return lags


def trial(
    url: str, rate: float, tokens: int, duration: float, step_s: float, client: type = Client
) -> Trial:
    workload = bench_workload(rate, tokens, duration)
    schedule = build_schedule(workload, seed=1)
    floor = run_async(idle_loop_lag(schedule))
    cpu_before = time.process_time()
    result = run_async(run_schedule(url, schedule, client_factory=client))
    cpu = time.process_time() - cpu_before
    ok = [r for r in result.records if r.ok]
    span = max(schedule.span_s, 1e-9)
    chunks = sum(len(r.itl_s) + 1 for r in ok)
    stream_s = step_s * tokens
    return Trial(
        rate=rate,
        rps=len(ok) / span,
        tokens_per_s=sum(r.output_tokens or 0 for r in ok) / span,
        lag_p50_ms=result.lag.p50_s * 1000,
        lag_p99_ms=result.lag.p99_s * 1000,
        lag_max_ms=result.lag.max_s * 1000,
        floor_p99_ms=float(np.percentile(floor, 99)) * 1000,
        errors=result.errors,
        kept_up=result.duration_s <= schedule.span_s + stream_s + 1.0,
        cpu_us_per_request=cpu / max(len(result.records), 1) * 1e6,
        cpu_us_per_chunk=cpu / max(chunks, 1) * 1e6,
    )


@dataclass
class Ladder:
    # Highest sustained rate with every lower rate sustained too (the conservative figure).
    steady: Trial | None = None
    broken: bool = False
    best: Trial | None = None
    best_over_floor: Trial | None = None
    # The fastest trial that kept up: the cheapest CPU per request and chunk.
    fastest: Trial | None = None


def climb(url: str, rates: list[float], tokens: int, duration: float, step_s: float) -> Ladder:
    """Rising rates (one retry each, the machine is noisy) until the generator falls behind."""
    ladder = Ladder()
    for rate in rates:
        result = trial(url, rate, tokens, duration, step_s)
        print(result.line(), flush=True)
        if not result.sustained:
            again = trial(url, rate, tokens, duration, step_s)
            print(again.line() + "  (retry)", flush=True)
            result = min(result, again, key=lambda t: (not t.kept_up, t.errors, t.lag_p99_ms))
        if not result.kept_up or result.errors:
            break
        ladder.fastest = result
        ladder.broken = ladder.broken or not result.sustained
        if result.sustained and not ladder.broken:
            ladder.steady = result
        if result.sustained:
            ladder.best = result
        if result.sustained_over_floor:
            ladder.best_over_floor = result
    return ladder


def report(name: str, ladder: Ladder, figure: str, unit: str, goal: str) -> None:
    def value(t: Trial | None) -> str:
        return f"{getattr(t, figure):,.0f} {unit}" if t else "none of the rates"

    print(f"  {name} (goal {goal}):")
    print(f"    lag p99 < 5 ms at every rate up to: {value(ladder.steady)}")
    print(f"    lag p99 < 5 ms, highest rate:       {value(ladder.best)}")
    print(f"    lag p99 <= idle-loop p99 + 1 ms:    {value(ladder.best_over_floor)}")
    if ladder.fastest:
        t = ladder.fastest
        print(
            f"    CPU at {value(t)}: {t.cpu_us_per_request:.0f} us/request, "
            f"{t.cpu_us_per_chunk:.1f} us/chunk -> one core: {1e6 / t.cpu_us_per_request:,.0f} "
            f"req/s or {1e6 / t.cpu_us_per_chunk:,.0f} chunks/s"
        )


CLIENTS = (("lean (loadtest/drive/http.py)", Client), ("aiohttp", AiohttpClient))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per trial")
    parser.add_argument("--short-tokens", type=int, default=4)
    parser.add_argument("--long-tokens", type=int, default=100)
    parser.add_argument("--step-ms", type=float, default=10.0)
    parser.add_argument("--compare-clients", action="store_true")
    parser.add_argument(
        "--pin", action="store_true", help="generator on CPU 0, server on CPU 1 (taskset)"
    )
    args = parser.parse_args()
    if args.pin:
        os.sched_setaffinity(0, {0})
    from turnout.logs import configure_logging

    configure_logging("error")
    load = os.getloadavg()[0]
    version = sys.version.split()[0]
    print(f"load generator benchmark: Python {version}, uvloop, {os.cpu_count()} CPUs")
    print(f"load average at start: {load:.1f} (other processes share these CPUs)")
    step_s = args.step_ms / 1000
    short, long_ = args.short_tokens, args.long_tokens

    server, url = start_server(0, 1 if args.pin else None)
    try:
        if args.compare_clients:
            print(f"clients compared: streams of {short} chunks at 500 req/s")
            for name, client in CLIENTS:
                print(f"  {name}:")
                print("  " + trial(url, 500, short, args.duration, 0.0, client).line())
        print(f"requests/s: streams of {short} chunks written at once")
        rates = [500.0, 1000, 1500, 2000, 2500, 3000, 4000, 5000]
        best_rps = climb(url, rates, short, args.duration, 0.0)
    finally:
        server.kill()
        server.wait()
    server, url = start_server(args.step_ms, 1 if args.pin else None)
    try:
        if args.compare_clients:
            print(f"clients compared: streams of {long_} chunks, 5,000 tokens/s")
            for name, client in CLIENTS:
                print(f"  {name}:")
                print("  " + trial(url, 5000 / long_, long_, args.duration, step_s, client).line())
        print(f"tokens/s: streams of {long_} chunks, one every {args.step_ms:g} ms")
        token_rates = [5000.0, 10000, 15000, 20000, 25000, 30000, 40000, 50000]
        best_tps = climb(url, [t / long_ for t in token_rates], long_, args.duration, step_s)
    finally:
        server.kill()
        server.wait()
    print()
    print(
        f"one generator process, no errors, keeping up (load average now {os.getloadavg()[0]:.1f}):"
    )
    report("requests/s", best_rps, "rps", "req/s", "2,000")
    report("tokens/s", best_tps, "tokens_per_s", "tokens/s", "20,000")


if __name__ == "__main__":
    main()
