import errno
import os
from pathlib import Path

import pytest

from loadtest.batch.writer import OutputBusy, OutputLock, ResultWriter


def test_lines_are_appended_whole_to_what_is_there(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"old\n")
    writer = ResultWriter(path)
    writer.write(b"one\n")
    writer.write(b"two\n")
    writer.close()
    assert path.read_bytes() == b"old\none\ntwo\n"


def test_a_failed_write_leaves_only_whole_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "out.jsonl"
    writer = ResultWriter(path)
    writer.write(b"first line\n")
    real_write = os.write
    calls = []

    def full_disk(fd: int, data: bytes) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[:5]))  # a partial write, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(OSError, match="No space left"):
        writer.write(b"second line\n")
    monkeypatch.undo()
    writer.close()
    assert path.read_bytes() == b"first line\n"
    assert calls == [12, 7]


def test_one_writer_per_output(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    lock = OutputLock(path)
    with pytest.raises(OutputBusy, match="another loadtest batch is writing"):
        OutputLock(path)
    lock.release()
    OutputLock(path).release()
    assert not lock.path.exists()


async def test_fsync_runs_on_its_interval_while_lines_arrive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd))
    writer = ResultWriter(tmp_path / "out.jsonl", fsync_interval_s=0.01)
    task = asyncio.create_task(writer.sync_every_interval())
    for _ in range(200):  # bounded: about 2 s at most
        if synced:
            break
        writer.write(b"x\n")
        await asyncio.sleep(0.01)
    task.cancel()
    assert synced
