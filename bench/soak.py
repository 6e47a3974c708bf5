"""Soak: many concurrent streams through the gateway for a long time, some clients leaving
mid-stream; does the gateway's memory or file-descriptor count creep?

Starts a fake replica (bench/fake_backend.py, streams of --chunks events --chunk-delay
apart) and the gateway, then keeps --streams streams open (closed loop) for --duration
seconds; --abort of them leave after a random number of events. Every --sample seconds the
gateway process's RSS and open file descriptors are read from /proc. Prints the samples,
their least-squares slopes after the first --warmup seconds, the request counts, and the
gateway's in-flight count once the load has stopped (it must be 0).

    .venv/bin/python bench/soak.py [--duration 1800] [--streams 500] [--abort 0.1]
        [--sample 10] [--json soak.json]
"""

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import sys
import time
from pathlib import Path

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.gateway.load import Outcome, chat, one_stream  # noqa: E402
from tests.procs import Proc, bin_path, free_port, start  # noqa: E402

MODEL = "bench-model"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value), per hour."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * 3600


async def worker(
    session: aiohttp.ClientSession,
    url: str,
    until: float,
    abort: float,
    chunks: int,
    rng: random.Random,
    counts: dict[str, int],
) -> None:
    while time.perf_counter() < until:
        outcome = Outcome(sent_at=0.0)
        leave = rng.randint(1, chunks) if rng.random() < abort else None
        await one_stream(session, url, chat(MODEL, chunks), outcome, 60.0, leave)
        if outcome.aborted:
            counts["aborted"] += 1
        elif outcome.ok:
            counts["completed"] += 1
        else:
            counts["errors"] += 1
            counts[f"error: {outcome.failure or outcome.status}"] = (
                counts.get(f"error: {outcome.failure or outcome.status}", 0) + 1
            )


async def sample(
    pid: int, started: float, every: float, stop: asyncio.Event, samples: list[dict[str, float]]
) -> None:
    while not stop.is_set():
        t = time.perf_counter() - started
        samples.append({"t": round(t, 1), "rss_mb": round(rss_mb(pid), 2), "fds": open_fds(pid)})
        print(
            f"  t={t:7.0f} s  rss {samples[-1]['rss_mb']:7.1f} MB  fds {samples[-1]['fds']:5d}",
            flush=True,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


async def soak(gw: Proc, args: argparse.Namespace) -> dict[str, object]:
    counts = {"completed": 0, "aborted": 0, "errors": 0}
    samples: list[dict[str, float]] = []
    stop = asyncio.Event()
    started = time.perf_counter()
    sampler = asyncio.ensure_future(sample(gw.popen.pid, started, args.sample, stop, samples))
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        until = started + args.duration
        rng = random.Random(18)
        await asyncio.gather(
            *(
                worker(
                    session,
                    gw.url,
                    until,
                    args.abort,
                    args.chunks,
                    random.Random(rng.random()),
                    counts,
                )
                for _ in range(args.streams)
            )
        )
    elapsed = time.perf_counter() - started
    stop.set()
    await sampler
    # Once the clients are gone: idle upstream connections expire after 4 s (aiohttp sweeps
    # them every 4 s), so by 10 s only what is leaked would be left.
    after = []
    for wait in (1.0, 4.0, 5.0):
        await asyncio.sleep(wait)
        after.append({"rss_mb": round(rss_mb(gw.popen.pid), 2), "fds": open_fds(gw.popen.pid)})
    in_flight = -1
    async with httpx.AsyncClient(timeout=5) as admin:
        for _ in range(50):
            replicas = (await admin.get(gw.url + "/admin/replicas")).json()["replicas"]
            in_flight = sum(r["in_flight"] for r in replicas)
            if in_flight == 0:
                break
            await asyncio.sleep(0.1)
    steady = [s for s in samples if s["t"] >= args.warmup] or samples
    return {
        "duration_s": round(elapsed, 1),
        "streams": args.streams,
        "abort_fraction": args.abort,
        "counts": counts,
        "requests_per_s": round((counts["completed"] + counts["aborted"]) / elapsed, 1),
        "samples": samples,
        "rss_mb": {
            "first": samples[0]["rss_mb"],
            "last": samples[-1]["rss_mb"],
            "max": max(s["rss_mb"] for s in samples),
        },
        "fds": {
            "first": samples[0]["fds"],
            "last": samples[-1]["fds"],
            "max": max(s["fds"] for s in samples),
        },
        "rss_slope_mb_per_hour": round(slope_per_hour([(s["t"], s["rss_mb"]) for s in steady]), 2),
        "fd_slope_per_hour": round(slope_per_hour([(s["t"], s["fds"]) for s in steady]), 2),
        "warmup_s": args.warmup,
        "after_load": after[-1],
        "after_load_1_5_10_s": after,
        "in_flight_after": in_flight,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=1800.0, help="seconds of load")
    parser.add_argument("--streams", type=int, default=500, help="streams kept open")
    parser.add_argument("--abort", type=float, default=0.1, help="fraction of clients leaving")
    parser.add_argument("--chunks", type=int, default=20, help="events per stream")
    parser.add_argument("--chunk-delay", type=float, default=0.1, help="seconds between events")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds left out of slopes")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.streams)), hard))
    started: list[Proc] = []
    try:
        port = free_port()
        backend = [
            sys.executable,
            str(ROOT / "bench" / "fake_backend.py"),
            "--port",
            str(port),
            "--chunks",
            str(args.chunks),
            "--chunk-delay",
            str(args.chunk_delay),
        ]
        started.append(start(backend, port=port))
        port = free_port()
        # One replica: a health check timed out on a starved machine would eject it and
        # fail every request for a while, which is not what a soak measures.
        env = {
            "GATEWAY_REPLICAS": started[0].url,
            "GATEWAY_LOG_LEVEL": "warning",
            "GATEWAY_HEALTH_INTERVAL": "10",
        }
        started.append(start([bin_path("gateway"), "--port", str(port)], port=port, env=env))
        print(
            f"soak: {args.streams} streams of {args.chunks} events {args.chunk_delay:g} s "
            f"apart, {args.abort:.0%} leaving early, for {args.duration:g} s",
            flush=True,
        )
        figures = asyncio.run(soak(started[1], args))
    finally:
        for proc in reversed(started):
            proc.stop()
    counts = figures["counts"]
    print(f"\nrequests: {counts}  ({figures['requests_per_s']} per s)")
    print(
        f"RSS MB: {figures['rss_mb']}  slope {figures['rss_slope_mb_per_hour']} MB/hour "
        f"(after {args.warmup:g} s)"
    )
    print(f"open fds: {figures['fds']}  slope {figures['fd_slope_per_hour']} per hour")
    print(f"1, 5 and 10 s after the load: {figures['after_load_1_5_10_s']}")
    print(f"gateway in flight after the load: {figures['in_flight_after']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
