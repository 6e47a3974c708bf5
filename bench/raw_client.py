"""The benchmarks' raw keep-alive HTTP/1.1 client: one connection per worker, one write per
request, its own minimal response reader, so that what is measured is the server, not the
client. Used by bench/gateway_bench.py."""

import asyncio
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

HOST = "127.0.0.1"


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
