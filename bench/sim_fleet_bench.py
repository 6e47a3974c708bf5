"""How many worker processes the six-replica fleet should run in: load it, compare.

For each process count, starts `vllm-sim fleet baseline --processes N`, drives
every replica with the same number of concurrent streaming requests (aiohttp,
ignore_eos, fixed length) for a fixed time, and prints the streamed tokens/s
and the mean inter-token latency the clients saw next to the one the profiles
predict for that batch. The fleet serves well when the two ITLs agree: a
simulator short of CPU stretches every step.

    .venv/bin/python bench/sim_fleet_bench.py [--processes 1 2 3 6] [--streams 48]
        [--tokens 200] [--seconds 8] [--time-scale 1]
"""

import argparse
import asyncio
import itertools
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtest.sim.layout import REFERENCE  # noqa: E402
from loadtest.sim.profiles import load_profile  # noqa: E402
from tests.procs import HOST, free_port  # noqa: E402


def free_base() -> int:
    while True:
        base = free_port()
        try:
            for offset in range(6):
                with socket.socket() as sock:
                    sock.bind((HOST, base + offset))
            return base
        except OSError:
            continue


async def stream(session: aiohttp.ClientSession, url: str, model: str, tokens: int) -> list[float]:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Tell me about the sea. " * 20}],
        "max_tokens": tokens,
        "ignore_eos": True,
        "stream": True,
    }
    times = []
    async with session.post(url + "/v1/chat/completions", json=body) as response:
        async for _ in response.content.iter_any():
            times.append(time.perf_counter())
    return times


async def drive(base: int, streams: int, tokens: int, seconds: float) -> tuple[int, list[float]]:
    gaps: list[float] = []
    total = 0
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def worker(index: int) -> None:
            nonlocal total
            url = f"http://{HOST}:{base + index}"
            while time.perf_counter() < deadline:
                times = await stream(session, url, REFERENCE[index].model, tokens)
                total += tokens
                gaps.extend(b - a for a, b in itertools.pairwise(times[1:]))

        await asyncio.gather(*(worker(i) for i in range(6) for _ in range(streams)))
    return total, gaps


def run(processes: int, args: argparse.Namespace) -> None:
    base = free_base()
    argv = [
        str(Path(sys.executable).parent / "vllm-sim"),
        *("fleet", "baseline", "--base-port", str(base), "--processes", str(processes)),
        *("--time-scale", str(args.time_scale)),
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == "fleet ready":
                break
        started = time.perf_counter()
        total, gaps = asyncio.run(drive(base, args.streams, args.tokens, args.seconds))
        elapsed = time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait(10)
    gaps.sort()
    mean = sum(gaps) / max(len(gaps), 1)
    p99 = gaps[int(0.99 * (len(gaps) - 1))] if gaps else 0.0
    print(
        f"processes {processes}: {total / elapsed:8,.0f} tokens/s, "
        f"client ITL mean {1e3 * mean:6.1f} ms, p99 {1e3 * p99:6.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 3, 6])
    parser.add_argument("--streams", type=int, default=48, help="concurrent streams per replica")
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--time-scale", type=float, default=1.0)
    args = parser.parse_args()
    context = 120 + args.tokens // 2
    for seat in REFERENCE[::2]:
        itl = load_profile(seat.profile).decode_itl(args.streams, context) * args.time_scale
        print(f"profile ITL at batch {args.streams}: {1e3 * itl:5.1f} ms  ({seat.model})")
    for processes in args.processes:
        run(processes, args)


if __name__ == "__main__":
    main()
