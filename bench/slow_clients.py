"""How long a good request takes while thousands of slow clients hold connections open.

Starts a fake replica (bench/fake_backend.py) and the gateway, opens N slow clients and
keeps them slow: a third send a request's headers a byte at a time, a third send complete
headers and then a body a byte at a time, a third connect and send nothing. Meanwhile a
good client sends requests one after another on a keep-alive connection. Prints the good
requests' latency without and with the slow clients, and what became of the slow ones
(the gateway answers 408 to a request not complete within GATEWAY_READ_TIMEOUT).

    .venv/bin/python bench/slow_clients.py [--slow 2000] [--seconds 20] [--read-timeout 60]
"""

import argparse
import asyncio
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.procs import HOST, Proc, bin_path, free_port, start  # noqa: E402

BODY = b'{"model": "bench-model", "messages": [{"role": "user", "content": "hi"}]}'
REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\n\r\n" % len(BODY)
) + BODY


async def good_requests(port: int, seconds: float) -> list[float]:
    """Latency of requests sent back to back for `seconds` on one keep-alive connection."""
    reader, writer = await asyncio.open_connection(HOST, port)
    latencies = []
    deadline = time.perf_counter() + seconds
    try:
        while time.perf_counter() < deadline:
            sent = time.perf_counter()
            writer.write(REQUEST)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - sent)
            assert head.startswith(b"HTTP/1.1 200"), head
            await asyncio.sleep(0.02)
    finally:
        writer.close()
    return latencies


async def slow_client(port: int, kind: int, stop: asyncio.Event, fates: dict[str, int]) -> None:
    """One slow client until `stop`; counts how it ended in `fates`."""
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
    except OSError:
        fates["could not connect"] = fates.get("could not connect", 0) + 1
        return
    if kind == 0:
        trickle = REQUEST[: REQUEST.index(b"\r\n\r\n")]  # the headers, never finished
    elif kind == 1:
        writer.write(REQUEST[: REQUEST.index(b"\r\n\r\n") + 4])
        trickle = BODY[:-1]  # the body, never finished
    else:
        trickle = b""  # connected, silent
    answer = asyncio.ensure_future(reader.read(4096))
    position = 0
    try:
        while not stop.is_set() and not answer.done():
            if position < len(trickle):
                writer.write(trickle[position : position + 1])
                position += 1
            await asyncio.wait({answer}, timeout=1.0)
        if answer.done() and not answer.exception():
            data = answer.result()
            fate = data.split(b"\r\n", 1)[0].decode() if data else "closed without answer"
        else:
            fate = "still open at the end"
        fates[fate] = fates.get(fate, 0) + 1
    finally:
        answer.cancel()
        writer.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def describe(name: str, latencies: list[float]) -> str:
    ms = [x * 1e3 for x in latencies]
    return (
        f"{name:<26} n={len(ms):<5} p50 {statistics.median(ms):6.2f} ms   "
        f"p99 {percentile(ms, 0.99):6.2f} ms   max {max(ms):7.2f} ms"
    )


async def run(port: int, slow: int, seconds: float) -> None:
    baseline = await good_requests(port, min(5.0, seconds / 2))
    print(describe("good, alone", baseline), flush=True)
    stop = asyncio.Event()
    fates: dict[str, int] = {}
    clients = []
    opened = time.perf_counter()
    for i in range(slow):
        clients.append(asyncio.ensure_future(slow_client(port, i % 3, stop, fates)))
        if i % 200 == 199:
            await asyncio.sleep(0.05)
    print(f"{slow} slow clients opened in {time.perf_counter() - opened:.1f} s", flush=True)
    await asyncio.sleep(1.0)
    loaded = await good_requests(port, seconds)
    stop.set()
    await asyncio.gather(*clients)
    print(describe(f"good, with {slow} slow", loaded))
    print("slow clients' fates:", ", ".join(f"{k}: {v}" for k, v in sorted(fates.items())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--read-timeout", type=float, default=60.0)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.slow * 2 + 256)), hard))
    started: list[Proc] = []
    try:
        port = free_port()
        backend = [sys.executable, str(ROOT / "bench" / "fake_backend.py"), "--port", str(port)]
        started.append(start(backend, port=port, ready_path="/health"))
        port = free_port()
        env = {
            "GATEWAY_REPLICAS": started[0].url,
            "GATEWAY_LOG_LEVEL": "warning",
            "GATEWAY_READ_TIMEOUT": str(args.read_timeout),
            "GATEWAY_MAX_CONNECTIONS": str(args.slow + 100),
        }
        started.append(start([bin_path("gateway"), "--port", str(port)], port=port, env=env))
        print(f"gateway read timeout {args.read_timeout:g} s; slow clients: a third trickle "
              "headers, a third a body, a third send nothing")  # fmt: skip
        asyncio.run(run(port, args.slow, args.seconds))
    finally:
        for proc in reversed(started):
            proc.stop()


if __name__ == "__main__":
    main()
