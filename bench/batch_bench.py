"""Does `loadtest batch run` keep up with a fast fleet, and does its memory stay flat?

Runs the batch client's own code (input check, output recovery, plan, BatchRunner writing the
output with fsync every second) in this process, pinned to CPU 0, against bench/fake_backend.py
(canned non-streaming chat answers, a few microseconds each) pinned to CPU 1:

1. ids: what holding a million custom_ids costs, as a Python set of strings and as the
   16-byte digests the client keeps (each in a fresh process, RSS growth).
2. rate: --rate 5000 for --requests requests: the rate achieved, and the client's CPU per
   request and share of its core (not the bottleneck while well under 100%).
3. max: no rate limit, --concurrency 128: the most the pair does, and who is busier.
4. sim: the same against vllm-sim (--time-scale 0, one process): the simulator's own ceiling.
5. memory (--lines, default 1,000,000; 0 skips): RSS sampled every half second while a
   --lines input is checked and sent; flat means the same RSS at 10% and at 100% done.

    .venv/bin/python bench/batch_bench.py [--requests 50000] [--lines 1000000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import orjson

from loadtest.batch.recover import recover
from loadtest.batch.retry import RetryPolicy
from loadtest.batch.runner import BatchOptions, BatchRunner
from loadtest.batch.scan import pending, plan, scan
from loadtest.batch.writer import ResultWriter
from loadtest.drive.runner import run_async

HERE = Path(__file__).resolve().parent
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def rss_mb(pid: str = "self") -> float:
    with open(f"/proc/{pid}/statm") as stat:
        return int(stat.read().split()[1]) * PAGE / 1e6


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def run_delay_s() -> float:
    """Seconds this process's main thread has waited for a CPU while runnable."""
    with open("/proc/self/schedstat") as stat:
        return int(stat.read().split()[1]) / 1e9


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_backend(cpu: int | None) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    argv = [sys.executable, str(HERE / "fake_backend.py"), "--port", str(port)]
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
    raise SystemExit("fake_backend did not start")


def start_sim(cpu: int | None) -> tuple[subprocess.Popen[bytes], str]:
    """vllm-sim without simulated time: what the simulator itself serves per core."""
    port = free_port()
    argv = [str(Path(sys.executable).parent / "vllm-sim"), "serve", "--model", "bench-model"]
    argv += ["--profile", "tiny", "--time-scale", "0", "--port", str(port)]
    argv += ["--log-level", "warning"]
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    proc = subprocess.Popen(argv, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/health", timeout=1.0)
            return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("vllm-sim did not start")


def write_input(path: Path, n: int) -> None:
    with path.open("wb") as sink:
        chunk = []
        for i in range(n):
            body = {
                "custom_id": f"task-{i:08d}",
                "model": "bench-model",
                "messages": [{"role": "user", "content": f"classify item {i}"}],
                "max_tokens": 8,
            }
            chunk.append(orjson.dumps(body))
            if len(chunk) == 10_000:
                sink.write(b"\n".join(chunk) + b"\n")
                chunk = []
        if chunk:
            sink.write(b"\n".join(chunk) + b"\n")


class Sampler(threading.Thread):
    """RSS of this process every `every_s`, with the phase and results written so far."""

    def __init__(self, every_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.every_s = every_s
        self.phase = "start"
        self.writer: ResultWriter | None = None
        self.samples: list[tuple[float, str, int, float]] = []
        self.stopped = threading.Event()
        self.start_time = time.monotonic()

    def run(self) -> None:
        while not self.stopped.wait(self.every_s):
            done = self.writer.lines if self.writer is not None else 0
            self.samples.append((time.monotonic() - self.start_time, self.phase, done, rss_mb()))


def send(
    url: str,
    tasks: Path,
    out: Path,
    *,
    concurrency: int,
    rate: float | None,
    sampler: Sampler | None = None,
) -> tuple[int, float, float]:
    """Check, plan and send `tasks` as the CLI does; (results, wall seconds, CPU seconds)."""
    if sampler is not None:
        sampler.phase = "check"
    index = scan(tasks)
    existing = recover(out)
    todo = plan(index, existing.done)
    writer = ResultWriter(out, fsync_interval_s=1.0)
    if sampler is not None:
        sampler.writer = writer
        sampler.phase = "send"
    options = BatchOptions(
        url, concurrency=concurrency, rate=rate, retry=RetryPolicy(max_attempts=3), seed=1
    )
    runner = BatchRunner(pending(index, todo.todo), writer, options, total=index.requests)
    del index, todo
    cpu, waited = time.process_time(), run_delay_s()
    session = run_async(runner.run())
    cpu, waited = time.process_time() - cpu, run_delay_s() - waited
    if session.duration_s > 0:
        print(f"  (the client waited for a CPU {waited / session.duration_s:.0%} of the time)")
    writer.close()
    if sampler is not None:
        sampler.phase = "end"
    counters = session.counters
    assert counters.failed == 0, f"{counters.failed} requests failed"
    return counters.ok, session.duration_s, cpu


def measure_ids() -> None:
    code = """
import hashlib, os, sys
import numpy as np
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 1e6
base = rss()
n = 1_000_000
if sys.argv[1] == 'set':
    kept = {f'task-{i:08d}' for i in range(n)}
else:
    kept = np.sort(np.frombuffer(b''.join(
        hashlib.blake2b(f'task-{i:08d}'.encode(), digest_size=16).digest() for i in range(n)),
        dtype='S16'))
print(f'{rss() - base:.0f}')
"""
    for kind, label in (("set", "a Python set of str"), ("digests", "sorted 16-byte digests")):
        grown = subprocess.run(
            [sys.executable, "-c", code, kind], capture_output=True, text=True, check=True
        ).stdout.strip()
        print(f"  1,000,000 custom_ids ('task-00000000') as {label}: +{grown} MB RSS")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--rate", type=float, default=5000.0)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--sim-requests", type=int, default=10_000)
    args = parser.parse_args()
    pin = (os.cpu_count() or 1) >= 2
    if pin:
        os.sched_setaffinity(0, {0})
    print(f"client on CPU 0, fake_backend on CPU 1 (pinned: {pin})")
    print("ids:")
    measure_ids()
    backend, url = start_backend(1 if pin else None)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            root = Path(scratch)
            tasks = root / "tasks.jsonl"
            write_input(tasks, args.requests)
            for name, rate, concurrency in (("rate", args.rate, 256), ("max", None, 128)):
                out = root / f"{name}.jsonl"
                server_before = cpu_s(backend.pid)
                done, wall, cpu = send(url, tasks, out, concurrency=concurrency, rate=rate)
                server = cpu_s(backend.pid) - server_before
                offered = f"--rate {rate:,.0f}" if rate else "no rate limit"
                print(
                    f"{name}: {offered}, --concurrency {concurrency}: {done:,} requests in "
                    f"{wall:.1f} s = {done / wall:,.0f} req/s; client CPU {cpu / done * 1e6:.0f} "
                    f"us/request = {cpu / wall:.0%} of its core; server {server / wall:.0%} of "
                    f"its core; client capacity ~{done / cpu:,.0f} req/s per core"
                )
            sim, sim_url = start_sim(1 if pin else None)
            try:
                sim_before = cpu_s(sim.pid)
                sim_tasks = root / "sim.jsonl"
                write_input(sim_tasks, args.sim_requests)
                done, wall, cpu = send(
                    sim_url, sim_tasks, root / "sim-out.jsonl", concurrency=128, rate=None
                )
                server = cpu_s(sim.pid) - sim_before
                print(
                    f"sim: vllm-sim --time-scale 0 as the target, --concurrency 128: {done:,} "
                    f"requests at {done / wall:,.0f} req/s; CPU per request: vllm-sim "
                    f"{server / done * 1e6:.0f} us, the client {cpu / done * 1e6:.0f} us "
                    f"({server / cpu:.1f}x: the simulator's core runs out first)"
                )
            finally:
                sim.kill()
                sim.wait()
            if args.lines:
                tasks = root / "million.jsonl"
                write_input(tasks, args.lines)
                print(f"memory: RSS before the job {rss_mb():.0f} MB (earlier phases included)")
                sampler = Sampler()
                sampler.start()
                done, wall, _ = send(
                    url,
                    tasks,
                    root / "million-out.jsonl",
                    concurrency=128,
                    rate=None,
                    sampler=sampler,
                )
                sampler.stopped.set()
                sampler.join()
                check = [s for s in sampler.samples if s[1] == "check"]
                print(
                    f"  {done:,} lines checked in ~{len(check) * sampler.every_s:.0f} s, sent in "
                    f"{wall:.0f} s; RSS (MB) by phase and progress:"
                )
                if check:
                    print(f"  checking the input: peak {max(s[3] for s in check):.0f}")
                sending = [s for s in sampler.samples if s[1] == "send"]
                for share in (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0):
                    at = next((s for s in sending if s[2] >= share * done), sending[-1])
                    print(f"  {at[2]:>9,} done ({share:>4.0%}): {at[3]:.0f}")
                values = [s[3] for s in sending if s[2] >= 0.1 * done]
                print(f"  from 10% to the end: min {min(values):.0f}, max {max(values):.0f}")
    finally:
        backend.kill()
        backend.wait()


if __name__ == "__main__":
    main()
