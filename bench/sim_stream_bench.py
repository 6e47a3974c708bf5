"""How many streamed tokens per second one `vllm-sim serve` process serves on one core.

Starts one simulator (profile `tiny`, a big batch, a KV cache that never runs out)
pinned to one CPU, and drives it from this process (pinned to another CPU when
there is one) with many concurrent streaming chat requests over aiohttp, a lean
client. Counts tokens from each stream's usage chunk and prints tokens/s,
chunks/s and the server's CPU time per token.

    .venv/bin/python bench/sim_stream_bench.py [--streams 256] [--tokens 256] [--seconds 10]
        [--time-scale 0] [--compare-fastapi]

`--time-scale 0` takes the simulated GPU out (steps cost no time), so the figure
is the server's own ceiling; `--time-scale 1` plays the tiny profile in real time.
`--compare-fastapi` then runs the same replica behind FastAPI's StreamingResponse
(bench/sim_fastapi_variant.py) and prints the ratio of CPU per token.
"""

import argparse
import asyncio
import os
import shutil
import sys
import time
from pathlib import Path

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.procs import free_port, start  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def one_stream(session: aiohttp.ClientSession, url: str, tokens: int) -> tuple[int, int]:
    body = {
        "model": "bench",
        "messages": [{"role": "user", "content": "Tell me a long story about the sea."}],
        "max_tokens": tokens,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    chunks = 0
    tail = b""
    async with session.post(url, json=body) as response:
        response.raise_for_status()
        async for data in response.content.iter_any():
            chunks += data.count(b"data: {")
            tail = (tail + data)[-4096:]
    usage = tail.rsplit(b"data: {", 1)[1].split(b"\n", 1)[0]
    got_tokens = orjson.loads(b"{" + usage)["usage"]["completion_tokens"]
    return got_tokens, chunks


async def drive(url: str, streams: int, tokens: int, seconds: float) -> tuple[int, int, float]:
    connector = aiohttp.TCPConnector(limit=streams)
    total_tokens = total_chunks = 0
    async with aiohttp.ClientSession(connector=connector) as session:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal total_tokens, total_chunks
            while time.perf_counter() < deadline:
                got, chunks = await one_stream(session, url, tokens)
                total_tokens += got
                total_chunks += chunks

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(streams)))
        elapsed = time.perf_counter() - started
    return total_tokens, total_chunks, elapsed


def server_argv(kind: str, port: int, args: argparse.Namespace) -> list[str]:
    seqs = str(max(args.streams, 1))
    if kind == "fastapi":
        variant = str(Path(__file__).with_name("sim_fastapi_variant.py"))
        return [sys.executable, variant, str(port), seqs, str(args.time_scale)]
    return [
        str(Path(sys.executable).parent / "vllm-sim"),
        *("serve", "--model", "bench", "--profile", "tiny", "--port", str(port)),
        *("--max-num-seqs", seqs, "--max-num-batched-tokens", "65536"),
        *("--kv-blocks", "1000000", "--time-scale", str(args.time_scale)),
        *("--log-level", "warning"),
    ]


def measure(kind: str, args: argparse.Namespace, server_cpu: int) -> float:
    """Run one server kind; print its figures; the server's CPU us per token."""
    port = free_port()
    pin = ("taskset", "-c", str(server_cpu)) if shutil.which("taskset") else ()
    proc = start([*pin, *server_argv(kind, port, args)], port=port)
    try:
        url = proc.url + "/v1/chat/completions"
        asyncio.run(drive(url, min(args.streams, 16), 16, 1.0))  # warm-up
        cpu_before = cpu_seconds(proc.popen.pid)
        tokens, chunks, elapsed = asyncio.run(drive(url, args.streams, args.tokens, args.seconds))
        server_cpu_s = cpu_seconds(proc.popen.pid) - cpu_before
    finally:
        proc.stop()
    per_token_us = 1e6 * server_cpu_s / max(tokens, 1)
    rate, chunk_rate, busy = tokens / elapsed, chunks / elapsed, server_cpu_s / elapsed
    print(f"[{kind}] streams {args.streams} x {args.tokens} tokens, {elapsed:.1f} s")
    print(f"[{kind}] streamed tokens/s: {rate:,.0f}  (SSE chunks/s {chunk_rate:,.0f})")
    print(f"[{kind}] server CPU: {busy:.0%} of one core, {per_token_us:.1f} us/token")
    # "Per core" as docs/gateway.md counts it: what one core would serve if the server had it all.
    print(f"[{kind}] per-core capacity (1e6 / CPU us per token): {1e6 / per_token_us:,.0f}")
    if rate < 20_000:
        print(f"[{kind}] measured rate below the 20,000 tokens/s goal: client- or machine-bound?")
    return per_token_us


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=256)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--time-scale", type=float, default=0.0)
    parser.add_argument(
        "--compare-fastapi",
        action="store_true",
        help="also run the same replica behind FastAPI's StreamingResponse",
    )
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpus = cpus[0], (cpus[1:] or cpus)
    os.sched_setaffinity(0, client_cpus)
    print(f"server CPU {server_cpu}, client CPUs {client_cpus}, time scale {args.time_scale}")
    plain = measure("vllm-sim", args, server_cpu)
    if args.compare_fastapi:
        framework = measure("fastapi", args, server_cpu)
        print(f"FastAPI StreamingResponse / plain ASGI, CPU per token: {framework / plain:.2f}x")


if __name__ == "__main__":
    main()
