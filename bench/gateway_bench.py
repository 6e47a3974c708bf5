"""What the gateway adds over calling a replica directly, and what one gateway process serves.

A fake replica that costs next to nothing (bench/fake_backend.py) and this script's
raw keep-alive HTTP client share CPU 0; the proxy under test runs alone on CPU 1
(`taskset`, when there are two CPUs). For each proxy, and for the replica called
directly, four phases run: c=1 and c=64, non-streaming and streaming. Reported:
latency p50/p99 and what the proxy adds over direct at p50 (same round), requests
per second, and the proxy's CPU time (utime+stime from /proc) per request and per
streamed chunk. Rounds alternate direct and proxied runs; figures are medians over
rounds.

Proxies: `gateway` (the real one, `gateway` console script), and two minimal FastAPI
relays that differ only in their upstream client (`relay-httpx`, `relay-aiohttp`,
bench/relay.py), so the gateway's client is chosen by numbers.

    .venv/bin/python bench/gateway_bench.py [--proxies gateway,relay-httpx,relay-aiohttp]
        [--rounds 2] [--requests 1000] [--duration 4] [--chunks 32]
"""

import argparse
import asyncio
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.procs import Proc, bin_path, free_port, start  # noqa: E402

HOST = "127.0.0.1"
TICKS = os.sysconf("SC_CLK_TCK")


# -- the client --------------------------------------------------------------------------


@dataclass
class PhaseResult:
    latencies: list[float] = field(default_factory=list)  # seconds, per measured request
    first_bytes: list[float] = field(default_factory=list)  # seconds to the first event
    chunks: int = 0  # SSE events over the measured requests
    errors: int = 0
    measured_wall: float = 0.0  # seconds the measured requests span
    served: int = 0  # every request of the phase, warm-up included (for CPU per request)
    cpu: float = 0.0  # proxy CPU seconds over the whole phase

    def pct(self, values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.measured_wall if self.measured_wall else 0.0


def request_bytes(port: int, stream: bool) -> bytes:
    body = (
        b'{"model": "bench-model", "messages": [{"role": "user", "content": "hi"}], '
        b'"max_tokens": 16, "stream": ' + (b"true" if stream else b"false") + b"}"
    )
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: {HOST}:{port}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, int, float | None]:
    """Read one response; returns (status, SSE events, perf_counter at the first event)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, chunked = None, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if not chunked:
        await reader.readexactly(length or 0)
        return status, 0, None
    events, first = 0, None
    while True:
        size = int((await reader.readline()).split(b";")[0], 16)
        if size == 0:
            await reader.readline()
            return status, events, first
        data = await reader.readexactly(size + 2)
        if first is None:
            first = time.perf_counter()
        events += data.count(b"data: ")


# One request: (sent, ended, first event or None, events, status).
Record = tuple[float, float, float | None, int, int]


async def worker(
    port: int, stream: bool, records: list[Record], keep_going: Callable[[], bool]
) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    payload = request_bytes(port, stream)
    try:
        while keep_going():
            sent = time.perf_counter()
            writer.write(payload)
            status, events, first = await read_response(reader)
            records.append((sent, time.perf_counter(), first, events, status))
    finally:
        writer.close()


async def run_phase(
    port: int, concurrency: int, stream: bool, *, requests: int, duration: float
) -> PhaseResult:
    """c=1 sends 50 requests to warm up, then `requests`; higher concurrency warms up
    for 0.5 s, then runs `duration` seconds. Only requests sent after the warm-up count."""
    records: list[Record] = []
    if concurrency == 1:
        total = requests + 50

        def keep_going() -> bool:
            return len(records) < total
    else:
        deadline = time.perf_counter() + 0.5 + duration

        def keep_going() -> bool:
            return time.perf_counter() < deadline

    await asyncio.gather(*(worker(port, stream, records, keep_going) for _ in range(concurrency)))
    records.sort()
    if concurrency == 1:
        measured = records[50:]
    else:
        warm_until = records[0][0] + 0.5
        measured = [r for r in records if r[0] >= warm_until]
    result = PhaseResult(served=len(records))
    for sent, ended, first, events, status in measured:
        if status != 200:
            result.errors += 1
            continue
        result.latencies.append(ended - sent)
        if first is not None:
            result.first_bytes.append(first - sent)
        result.chunks += events
    if measured:
        result.measured_wall = max(r[1] for r in measured) - measured[0][0]
    return result


# -- the processes -----------------------------------------------------------------------


def cpu_seconds(pgid: int) -> float:
    """utime + stime of every process in the group (the proxy and any workers)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command: state ppid pgrp ...; utime and stime are fields 14 and 15.
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / TICKS


def pinned(cpu: int, argv: list[str]) -> list[str]:
    if (os.cpu_count() or 1) >= 2 and Path("/usr/bin/taskset").exists():
        return ["taskset", "-c", str(cpu), *argv]
    return argv


def start_proxy(kind: str, upstream: str) -> Proc:
    port = free_port()
    if kind == "gateway":
        env = {
            "GATEWAY_REPLICAS": upstream,
            "GATEWAY_PORT": str(port),
            "GATEWAY_HOST": HOST,
            "GATEWAY_STRATEGY": "round_robin",
        }
        return start(pinned(1, [bin_path("gateway")]), port=port, env=env, timeout=30)
    client = kind.removeprefix("relay-")
    argv = [sys.executable, str(ROOT / "bench" / "relay.py"), "--client", client]
    argv += ["--upstream", upstream, "--port", str(port)]
    return start(pinned(1, argv), port=port, timeout=30)


# -- the run -----------------------------------------------------------------------------

PHASES = [
    ("c=1", 1, False),
    ("c=1 stream", 1, True),
    ("c=64", 64, False),
    ("c=64 stream", 64, True),
]


async def measure(port: int, pgid: int | None, args: argparse.Namespace) -> dict[str, PhaseResult]:
    results = {}
    for name, concurrency, stream in PHASES:
        before = cpu_seconds(pgid) if pgid else 0.0
        result = await run_phase(
            port, concurrency, stream, requests=args.requests, duration=args.duration
        )
        result.cpu = (cpu_seconds(pgid) - before) if pgid else 0.0
        results[name] = result
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxies", default="gateway,relay-httpx,relay-aiohttp")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=1000, help="per c=1 phase")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per c=64 phase")
    parser.add_argument("--chunks", type=int, default=32, help="events per streamed response")
    args = parser.parse_args()
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {0})

    backend_port = free_port()
    backend_argv = [sys.executable, str(ROOT / "bench" / "fake_backend.py")]
    backend_argv += ["--port", str(backend_port), "--chunks", str(args.chunks)]
    backend = start(pinned(0, backend_argv), port=backend_port)
    upstream = f"http://{HOST}:{backend_port}"
    proxies: dict[str, Proc] = {}
    runs: dict[str, list[dict[str, PhaseResult]]] = {"direct": []}
    try:
        for kind in [p for p in args.proxies.split(",") if p]:
            try:
                proxies[kind] = start_proxy(kind, upstream)
                runs[kind] = []
            except (RuntimeError, TimeoutError, FileNotFoundError) as exc:
                print(f"skipping {kind}: {str(exc).splitlines()[0]}", file=sys.stderr)
        for round_no in range(args.rounds):
            print(f"round {round_no + 1}/{args.rounds}", file=sys.stderr)
            runs["direct"].append(asyncio.run(measure(backend_port, None, args)))
            for kind, proc in proxies.items():
                runs[kind].append(asyncio.run(measure(proc.port, proc.popen.pid, args)))
    finally:
        for proc in proxies.values():
            proc.stop()
        backend.stop()
    report(runs, args)


def report(runs: dict[str, list[dict[str, PhaseResult]]], args: argparse.Namespace) -> None:
    med = statistics.median
    rounds = len(runs["direct"])
    print(
        f"\ngateway_bench: {rounds} rounds, {args.requests} requests per c=1 phase, "
        f"{args.duration:g} s per c=64 phase, {args.chunks} events per stream; "
        f"CPUs: {os.cpu_count()}, proxy pinned to CPU 1\n"
    )
    header = (
        f"{'proxy':<14} {'phase':<12} {'p50 ms':>8} {'p99 ms':>8} {'added p50':>10} "
        f"{'TTFB p50':>9} {'req/s':>8} {'err':>5} {'CPU µs/req':>11} {'µs/chunk':>9}"
    )
    print(header)
    print("-" * len(header))
    for kind, per_round in runs.items():
        if not per_round:
            continue
        for name, _, stream in PHASES:
            rs = [r[name] for r in per_round]
            direct = [r[name] for r in runs["direct"]]
            p50 = med(r.pct(r.latencies, 0.5) for r in rs) * 1e3
            p99 = med(r.pct(r.latencies, 0.99) for r in rs) * 1e3
            added = med(
                (r.pct(r.latencies, 0.5) - d.pct(d.latencies, 0.5)) * 1e3
                for r, d in zip(rs, direct, strict=True)
            )
            ttfb = med(r.pct(r.first_bytes, 0.5) for r in rs) * 1e3 if stream else float("nan")
            rps = med(r.rps for r in rs)
            errors = sum(r.errors for r in rs)
            cpu_req = med(r.cpu / max(1, r.served) for r in rs) * 1e6
            per_chunk = ""
            if stream and kind != "direct":
                plain_name = name.replace(" stream", "")
                plain = med(r[plain_name].cpu / max(1, r[plain_name].served) for r in per_round)
                events = med(r.chunks / max(1, len(r.latencies)) for r in rs)
                per_chunk = f"{(cpu_req / 1e6 - plain) / max(1, events) * 1e6:9.1f}"
            added_text = "" if kind == "direct" else f"{added:+10.3f}"
            cpu_text = "" if kind == "direct" else f"{cpu_req:11.0f}"
            print(
                f"{kind:<14} {name:<12} {p50:8.3f} {p99:8.3f} {added_text:>10} "
                f"{ttfb:9.3f} {rps:8.0f} {errors:5d} {cpu_text:>11} {per_chunk:>9}"
            )
    print(
        "\nadded p50: proxied minus direct, same round. CPU: the proxy process's utime+stime "
        "over the phase / requests served.\nµs/chunk: (CPU per streamed request - CPU per "
        "plain request) / events per stream. Per-core req/s = 1e6 / (CPU µs/req) at c=64."
    )


if __name__ == "__main__":
    main()
