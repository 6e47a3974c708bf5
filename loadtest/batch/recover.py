"""What an existing output file already holds, for --resume: the output is its own checkpoint.

A request is finished exactly when its complete line is in the output (the writer appends each
line with one write, only once the request's outcome is final). So after kill -9 or a power cut
the lines present are what finished, and every other request is sent again: nothing finished
is redone, nothing finished is lost. A torn end (a partial last line from a full disk, or
garbage/zero bytes left by a power cut) is cut off; the bytes cut are kept beside the file.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from loadtest.batch.lines import read_result
from loadtest.batch.scan import ID_DTYPE
from loadtest.batch.tasks import digest


class DamagedOutput(Exception):
    """The output has a line that is not a result in the middle, not at its end."""


@dataclass(frozen=True, eq=False)
class Existing:
    """The results already in the output."""

    done: np.ndarray  # sorted, unique digests of their custom_ids
    results: int
    ok: int
    failed: int
    prompt_tokens: int
    completion_tokens: int
    duplicates: int  # lines whose custom_id an earlier line already had
    cut_bytes: int = 0  # the torn end removed
    cut_saved: Path | None = None
    dropped_failed: int = 0  # failed results removed for --retry-failed


def fsync_directory(path: Path) -> None:
    """Make a created, renamed or removed entry in `path` survive a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def recover(path: Path, *, retry_failed: bool = False, repair: bool = True) -> Existing:
    """Read `path` (absent: empty), cut a torn end, and with `retry_failed` rewrite it without
    the results that are not HTTP 200 so that they are sent again. Raises DamagedOutput.

    With `repair` false the file is only read (`cut_bytes` says whether it needs cutting)."""
    if not repair:
        retry_failed = False
    empty = np.array([], dtype=ID_DTYPE)
    if not path.exists():
        return Existing(empty, 0, 0, 0, 0, 0, 0)
    digests = bytearray()
    results = ok = failed = prompt = completion = dropped = 0
    good_end = 0
    bad: tuple[int, int] | None = None  # (line, offset) of the first line that is not a result
    scratch = path.with_name(path.name + ".rewrite")
    rewrite: BinaryIO | None = scratch.open("wb") if retry_failed else None
    try:
        with path.open("rb") as source:
            offset = 0
            for number, raw in enumerate(source, start=1):
                result = read_result(raw)
                if result is None:
                    bad = bad or (number, offset)
                elif bad is not None:
                    raise DamagedOutput(
                        f"{path}:{bad[0]}: not a result line, yet results follow it: this is "
                        "not a torn end; repair or remove that line, then --resume"
                    )
                elif rewrite is not None and not result.ok:
                    dropped += 1
                    good_end = offset + len(raw)
                else:
                    good_end = offset + len(raw)
                    results += 1
                    ok += result.ok
                    failed += not result.ok
                    prompt += result.prompt_tokens
                    completion += result.completion_tokens
                    digests += digest(result.custom_id)
                    if rewrite is not None:
                        rewrite.write(raw)
                offset += len(raw)
        cut = path.stat().st_size - good_end
        cut_saved = _save_cut(path, good_end) if bad is not None and repair else None
        if not repair:
            pass
        elif rewrite is not None and dropped:
            rewrite.flush()
            os.fsync(rewrite.fileno())
            rewrite.close()
            os.replace(scratch, path)
            fsync_directory(path.parent)
        elif bad is not None:
            with path.open("r+b") as target:
                target.truncate(good_end)
                os.fsync(target.fileno())
    finally:
        if rewrite is not None:
            rewrite.close()
            scratch.unlink(missing_ok=True)
    ids = np.sort(np.frombuffer(bytes(digests), dtype=ID_DTYPE))
    unique = np.ones(len(ids), dtype=bool)
    unique[1:] = ids[1:] != ids[:-1]
    return Existing(
        done=ids[unique],
        results=results,
        ok=ok,
        failed=failed,
        prompt_tokens=prompt,
        completion_tokens=completion,
        duplicates=int((~unique).sum()),
        cut_bytes=cut if bad is not None else 0,
        cut_saved=cut_saved,
        dropped_failed=dropped,
    )


def _save_cut(path: Path, good_end: int) -> Path:
    """Copy the bytes past `good_end` beside `path` (nothing is thrown away unseen)."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    saved = path.with_name(f"{path.name}.torn-{stamp}")
    n = 1
    while saved.exists():
        n += 1
        saved = path.with_name(f"{path.name}.torn-{stamp}-{n}")
    with path.open("rb") as source, saved.open("wb") as sink:
        source.seek(good_end)
        while chunk := source.read(1 << 20):
            sink.write(chunk)
        sink.flush()
        os.fsync(sink.fileno())
    return saved
