"""The whole input is read once before anything is sent: every line checked, duplicate
custom_ids found with their line numbers, and then a plan of which lines still need sending.

Memory: custom_ids are kept as 16-byte digests in numpy arrays, not as Python strings: about
45 MB per million lines at the peak of the check (sorting them), then 1 byte per line for the
plan while sending. A Python set of a million short custom_ids alone costs ~98 MB
(bench/batch_bench.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loadtest.batch.tasks import InvalidLine, Task, digest, is_blank, parse_line

BLANK, VALID, INVALID, DUPLICATE = 0, 1, 2, 3
ID_DTYPE = "S16"


class InputChanged(Exception):
    """The input file changed between the check and the sending."""


@dataclass(frozen=True, slots=True)
class Problem:
    line: int
    message: str
    text: bytes  # the line as read, for the errors file


@dataclass(frozen=True, eq=False)
class InputIndex:
    """What the check found, line by line."""

    path: Path
    status: np.ndarray  # one of BLANK, VALID, INVALID, DUPLICATE per line (uint8)
    ids: np.ndarray  # digests of the VALID lines, in line order
    # Each duplicate line, and the line its custom_id was first seen on.
    duplicate_lines: np.ndarray
    first_lines: np.ndarray
    size: int
    mtime_ns: int

    @property
    def requests(self) -> int:
        return int(np.count_nonzero(self.status == VALID))

    @property
    def problem_count(self) -> int:
        return int(np.count_nonzero(self.status >= INVALID))

    def check_unchanged(self) -> None:
        stat = self.path.stat()
        if (stat.st_size, stat.st_mtime_ns) != (self.size, self.mtime_ns):
            raise InputChanged(f"{self.path} changed while the job was being prepared")


@dataclass(frozen=True, eq=False)
class Plan:
    """Which lines to send in this run."""

    todo: np.ndarray  # bool per line
    done: int  # requests that already have a result
    unknown: int  # results whose custom_id is in no valid input line

    @property
    def to_send(self) -> int:
        return int(np.count_nonzero(self.todo))


def count_lines(path: Path) -> int:
    """Lines in `path`, a last one without a newline included."""
    lines, last = 0, b"\n"
    with path.open("rb") as source:
        while block := source.read(1 << 20):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


def scan(path: Path) -> InputIndex:
    """Check every line of `path`; raises OSError when it cannot be read."""
    stat = path.stat()
    # Sized up front: numpy arrays this large are mapped memory, returned whole when freed.
    size = count_lines(path)
    codes = np.zeros(size, dtype=np.uint8)
    ids = np.empty(size, dtype=ID_DTYPE)
    valid = 0
    with path.open("rb") as source:
        for number, raw in enumerate(source, start=1):
            if number > size:
                raise InputChanged(f"{path} grew while it was being checked")
            if is_blank(raw):
                continue  # codes are BLANK (0) until set
            try:
                task = parse_line(raw, number)
            except InvalidLine:
                codes[number - 1] = INVALID
                continue
            codes[number - 1] = VALID
            ids[valid] = digest(task.custom_id)
            valid += 1
    ids = ids[:valid].copy() if valid < size else ids
    valid_lines = np.flatnonzero(codes == VALID)
    order = np.argsort(ids, kind="stable")  # equal ids stay in line order: the first one wins
    ordered = ids[order]
    repeat = np.zeros(len(ids), dtype=bool)
    repeat[1:] = ordered[1:] == ordered[:-1]
    del ordered
    no_lines = np.array([], dtype=np.int64)
    duplicate_lines, first_lines = no_lines, no_lines
    if repeat.any():
        group = np.cumsum(~repeat) - 1  # the group of equal ids each sorted position is in
        starts = np.flatnonzero(~repeat)
        duplicate_lines = valid_lines[order[repeat]]
        first_lines = valid_lines[order[starts[group[repeat]]]]
        codes[duplicate_lines] = DUPLICATE
        keep = np.ones(len(ids), dtype=bool)
        keep[order[repeat]] = False
        ids = ids[keep]
        by_line = np.argsort(duplicate_lines)
        duplicate_lines, first_lines = duplicate_lines[by_line], first_lines[by_line]
    return InputIndex(
        path=path,
        status=codes,
        ids=ids,
        duplicate_lines=duplicate_lines + 1,
        first_lines=first_lines + 1,
        size=stat.st_size,
        mtime_ns=stat.st_mtime_ns,
    )


def problems(index: InputIndex) -> Iterator[Problem]:
    """Each invalid or duplicate line with what is wrong, in line order (reads the file again)."""
    if index.problem_count == 0:
        return
    index.check_unchanged()
    first_of = dict(zip(index.duplicate_lines.tolist(), index.first_lines.tolist(), strict=True))
    status = index.status
    with index.path.open("rb") as source:
        for number, raw in enumerate(source, start=1):
            code = status[number - 1]
            if code == INVALID:
                try:
                    parse_line(raw, number)
                    message = "invalid"  # pragma: no cover - the file was checked unchanged
                except InvalidLine as exc:
                    message = str(exc)
                yield Problem(number, message, raw.rstrip(b"\r\n"))
            elif code == DUPLICATE:
                task = parse_line(raw, number)
                message = f"custom_id {task.custom_id!r} already on line {first_of[number]}"
                yield Problem(number, message, raw.rstrip(b"\r\n"))


def plan(index: InputIndex, done: np.ndarray) -> Plan:
    """Lines still to send, given the sorted digests of the results already written."""
    found = _member(index.ids, done)
    todo = np.zeros(len(index.status), dtype=bool)
    todo[np.flatnonzero(index.status == VALID)[~found]] = True
    known = _member(done, np.sort(index.ids))
    return Plan(todo=todo, done=int(found.sum()), unknown=int((~known).sum()))


def _member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """For each of `values`, whether it is in `sorted_set`."""
    if len(sorted_set) == 0 or len(values) == 0:
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return np.asarray(sorted_set[at] == values)


def pending(index: InputIndex, todo: np.ndarray) -> Iterator[Task]:
    """The tasks of the lines marked in `todo`, read from the input as they are needed.
    Holds one byte per line, not the index (its digests can go once the plan is made)."""
    index.check_unchanged()
    return _read_marked(index.path, index.size, todo.tobytes())


def _read_marked(path: Path, size: int, marks: bytes) -> Iterator[Task]:
    # Indexing bytes is several times cheaper than indexing a numpy bool array.
    with path.open("rb") as source:
        for number, raw in enumerate(source, start=1):
            if number <= len(marks) and marks[number - 1]:
                try:
                    yield parse_line(raw, number)
                except InvalidLine as exc:
                    raise InputChanged(f"{path}:{number} changed: {exc}") from None
    if os.stat(path).st_size != size:
        raise InputChanged(f"{path} changed while the job ran")
