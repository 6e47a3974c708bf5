"""Appends result lines to the output: one write per line as each request finishes (in the
kernel at once, so kill -9 loses none), fsync at a bounded interval (a power cut loses at most
that interval, and those requests are sent again on --resume).

One job per output at a time: a lock file beside it, released by the kernel however the
process ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
from pathlib import Path

from loadtest.batch.recover import fsync_directory


class OutputBusy(Exception):
    """Another process is writing this output."""


class OutputLock:
    """An exclusive flock on `<output>.lock` for as long as the job runs."""

    def __init__(self, output: Path) -> None:
        self.path = output.with_name(output.name + ".lock")
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise OutputBusy(f"another loadtest batch is writing {output}") from None
            # The holder before us may have removed the file between our open and our lock.
            with contextlib.suppress(FileNotFoundError):
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
            os.close(fd)
        self._fd = fd

    def release(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self._fd)


class ResultWriter:
    """Append-only writer of whole lines to one file."""

    def __init__(self, path: Path, *, fsync_interval_s: float = 1.0) -> None:
        created = not path.exists()
        self.path = path
        self.fsync_interval_s = fsync_interval_s
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if created:
            fsync_directory(path.parent)
        self.size = os.fstat(self._fd).st_size
        self.lines = 0
        self._dirty = False

    def write(self, line: bytes) -> None:
        """Append `line` (ending in a newline) whole. On failure (a full disk) the file is cut
        back to its last whole line, best effort, and the OSError raised."""
        view = memoryview(line)
        try:
            while view:
                written = os.write(self._fd, view)
                if written == 0:  # pragma: no cover - regular files never do this
                    raise OSError(errno.EIO, "write wrote nothing")
                view = view[written:]
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self.size)
            raise
        self.size += len(line)
        self.lines += 1
        self._dirty = True

    def sync(self) -> None:
        """fsync now (blocking)."""
        self._dirty = False
        os.fsync(self._fd)

    async def sync_every_interval(self) -> None:
        """fsync whenever lines were written, every `fsync_interval_s`, off the event loop."""
        while True:
            await asyncio.sleep(self.fsync_interval_s)
            if self._dirty:
                self._dirty = False
                await asyncio.to_thread(os.fsync, self._fd)

    def close(self) -> None:
        try:
            os.fsync(self._fd)
        finally:
            os.close(self._fd)
