import os
from pathlib import Path

import numpy as np
import orjson
import pytest

from loadtest.batch.scan import (
    BLANK,
    DUPLICATE,
    ID_DTYPE,
    INVALID,
    VALID,
    InputChanged,
    pending,
    plan,
    problems,
    scan,
)
from loadtest.batch.tasks import digest


def request(custom_id: str | None = None) -> bytes:
    body: dict[str, object] = {"model": "m", "prompt": "x"}
    if custom_id is not None:
        body["custom_id"] = custom_id
    return orjson.dumps(body)


def write(tmp_path: Path, lines: list[bytes]) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def done(*ids: str) -> np.ndarray:
    return np.sort(np.array([digest(i) for i in ids], dtype=ID_DTYPE))


def test_scan_finds_invalid_and_duplicate_lines_with_their_numbers(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [request("a"), b"", request("b"), b"oops", request("a"), request(), request("a"), b"  "],
    )
    index = scan(path)
    assert index.status.tolist() == [
        VALID,
        BLANK,
        VALID,
        INVALID,
        DUPLICATE,
        VALID,
        DUPLICATE,
        BLANK,
    ]
    assert (index.requests, index.problem_count) == (3, 3)
    found = [(p.line, p.message) for p in problems(index)]
    assert found[0][0] == 4 and found[0][1].startswith("not JSON")
    assert found[1:] == [
        (5, "custom_id 'a' already on line 1"),
        (7, "custom_id 'a' already on line 1"),
    ]
    assert next(p.text for p in problems(index)) == b"oops"


def test_a_default_custom_id_can_clash_with_an_explicit_one(tmp_path: Path) -> None:
    index = scan(write(tmp_path, [request(), request("line-1")]))
    assert [(p.line, p.message) for p in problems(index)] == [
        (2, "custom_id 'line-1' already on line 1")
    ]


def test_plan_sends_what_has_no_result_and_spots_foreign_results(tmp_path: Path) -> None:
    path = write(tmp_path, [request("a"), b"bad", request("b"), request("c"), request("b")])
    index = scan(path)
    result = plan(index, done("b", "zzz"))
    assert result.todo.tolist() == [True, False, False, True, False]
    assert (result.done, result.unknown, result.to_send) == (1, 1, 2)
    assert [t.custom_id for t in pending(index, result.todo)] == ["a", "c"]


def test_plan_with_no_results_sends_every_valid_first_line(tmp_path: Path) -> None:
    index = scan(write(tmp_path, [request("a"), request("a"), request()]))
    assert [t.line for t in pending(index, plan(index, done()).todo)] == [1, 3]


def test_an_empty_input_has_nothing_to_send(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    index = scan(path)
    assert (index.requests, plan(index, done()).to_send) == (0, 0)


def test_an_input_changed_after_the_check_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, [request("a"), request("b")])
    index = scan(path)
    todo = plan(index, done()).todo
    path.write_bytes(path.read_bytes() + request("c") + b"\n")
    os.utime(path, ns=(index.mtime_ns + 10**9, index.mtime_ns + 10**9))
    with pytest.raises(InputChanged):
        list(pending(index, todo))


def test_a_last_line_without_newline_counts(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(request("a") + b"\n\n" + request("b"))
    index = scan(path)
    assert index.status.tolist() == [VALID, BLANK, VALID]
    assert [t.custom_id for t in pending(index, plan(index, done()).todo)] == ["a", "b"]
