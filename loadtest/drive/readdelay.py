"""How late the generator reads: the time from bytes arriving on a socket to the event loop
taking them, which is what a chunk's timestamp is late by.

The chunks' own sockets are read by the event loop's transports, which do not expose the
kernel's arrival times, so a probe stands in for them: a helper thread sends a datagram to
a local UDP socket every few milliseconds; the kernel stamps each datagram on arrival
(SO_TIMESTAMPNS, Linux), and the event loop, which watches that socket like the others,
reads it and records now minus the stamp. When the loop is busy (parsing a burst of
chunks, a long callback), every socket waits as long as the probe's. Where the kernel gives
no stamp, the thread's own send time stands in (it can be late by the GIL's switch interval
when the loop holds it).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
import threading
import time

INTERVAL_S = 0.005
# Python does not name it; 35 on Linux's common architectures (asm-generic/socket.h).
_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform == "linux" else None)
_TIMESPEC = struct.Struct("@qq")
_STAMP = struct.Struct("@q")
# Keeps memory bounded on long runs: about 14 hours at one sample every 5 ms.
_MAX_SAMPLES = 10_000_000


class ReadDelayProbe:
    """Samples this event loop's read delay while it is entered (async context manager).
    `delays` holds the samples in seconds."""

    def __init__(self, interval_s: float = INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.delays: list[float] = []
        self.kernel_stamps = False
        self._reader: socket.socket | None = None
        self._writer: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> ReadDelayProbe:
        reader = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        reader.bind(("127.0.0.1", 0))
        reader.setblocking(False)
        if _TIMESTAMPNS is not None:
            try:
                reader.setsockopt(socket.SOL_SOCKET, _TIMESTAMPNS, 1)
                self.kernel_stamps = True
            except OSError:
                self.kernel_stamps = False
        writer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        writer.connect(reader.getsockname())
        self._reader, self._writer = reader, writer
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(reader.fileno(), self._on_readable)
        self._thread = threading.Thread(target=self._send, name="read-delay-probe", daemon=True)
        self._thread.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 1.0)
        if self._loop is not None and self._reader is not None:
            self._loop.remove_reader(self._reader.fileno())
        for sock in (self._reader, self._writer):
            if sock is not None:
                sock.close()

    def _send(self) -> None:
        assert self._writer is not None
        next_at = time.monotonic()
        while not self._stop.is_set():
            stamp = time.time_ns() if self.kernel_stamps else time.perf_counter_ns()
            try:
                self._writer.send(_STAMP.pack(stamp))
            except OSError:
                return
            next_at += self.interval_s
            self._stop.wait(max(next_at - time.monotonic(), 0.0))

    def _on_readable(self) -> None:
        assert self._reader is not None
        size = socket.CMSG_SPACE(_TIMESPEC.size)
        while True:
            try:
                data, ancillary, _, _ = self._reader.recvmsg(_STAMP.size, size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if self.kernel_stamps:
                now = time.time_ns()
                arrived = _kernel_stamp(ancillary)
            else:
                now = time.perf_counter_ns()
                arrived = _STAMP.unpack(data)[0] if len(data) == _STAMP.size else None
            if arrived is not None and len(self.delays) < _MAX_SAMPLES:
                self.delays.append(max(now - arrived, 0) / 1e9)


def _kernel_stamp(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == _TIMESTAMPNS and len(payload) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(payload)
            return int(seconds * 1_000_000_000 + nanoseconds)
    return None
