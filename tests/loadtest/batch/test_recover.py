from pathlib import Path

import orjson
import pytest

from loadtest.batch.lines import LineIds, answer_line, error_line, read_result
from loadtest.batch.recover import DamagedOutput, recover
from loadtest.batch.tasks import digest

IDS = LineIds()


def ok(custom_id: str, prompt: int = 3, completion: int = 5) -> bytes:
    body = {"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion}}
    return answer_line(IDS.next(), custom_id, 200, "req", orjson.dumps(body), body)


def http_error(custom_id: str, status: int = 500) -> bytes:
    body = {"error": {"message": "boom"}}
    return answer_line(IDS.next(), custom_id, status, "req", orjson.dumps(body), body)


def test_an_absent_output_holds_nothing(tmp_path: Path) -> None:
    existing = recover(tmp_path / "none.jsonl")
    assert (existing.results, len(existing.done)) == (0, 0)


def test_results_are_counted_with_their_tokens(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    lost = error_line(IDS.next(), "c", "timeout", "slow")
    path.write_bytes(ok("a", 2, 7) + http_error("b", 400) + lost + ok("d", 1, 1))
    existing = recover(path)
    assert (existing.results, existing.ok, existing.failed) == (4, 2, 2)
    assert (existing.prompt_tokens, existing.completion_tokens) == (3, 8)
    assert sorted(existing.done.tolist()) == sorted(digest(i) for i in "abcd")
    assert existing.cut_bytes == 0 and existing.cut_saved is None


@pytest.mark.parametrize(
    "tail",
    [
        b'{"id":"x","custom_id":"z","respo',  # a partial write
        b"\x00" * 4096,  # zeros a power cut can leave past the last flushed block
        b'{"id": 1}\n\x00\x00\n',  # lines that are not results, up to the end
    ],
)
def test_a_torn_end_is_cut_and_kept_beside_the_output(tmp_path: Path, tail: bytes) -> None:
    path = tmp_path / "out.jsonl"
    good = ok("a") + ok("b")
    path.write_bytes(good + tail)
    existing = recover(path)
    assert path.read_bytes() == good
    assert existing.results == 2 and existing.cut_bytes == len(tail)
    assert existing.cut_saved is not None and existing.cut_saved.read_bytes() == tail
    assert recover(path).cut_bytes == 0  # the repair is done once


def test_reading_without_repair_touches_nothing(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    torn = b'{"torn'
    before = ok("a") + http_error("b") + torn
    path.write_bytes(before)
    existing = recover(path, retry_failed=True, repair=False)
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]
    assert (existing.results, existing.failed, existing.cut_bytes) == (2, 1, len(torn))
    assert existing.cut_saved is None and existing.dropped_failed == 0


def test_a_bad_line_with_results_after_it_is_not_a_torn_end(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    before = ok("a") + b"garbage\n" + ok("b")
    path.write_bytes(before)
    with pytest.raises(DamagedOutput, match=r"out.jsonl:2: not a result line"):
        recover(path)
    assert path.read_bytes() == before


def test_retry_failed_removes_what_is_not_a_200(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    a, d = ok("a"), ok("d")
    failed = http_error("b") + error_line(IDS.next(), "c", "timeout", "x")
    path.write_bytes(a + failed + d + b"{tor")
    existing = recover(path, retry_failed=True)
    assert path.read_bytes() == a + d
    assert (existing.results, existing.failed, existing.dropped_failed) == (2, 0, 2)
    assert sorted(existing.done.tolist()) == sorted([digest("a"), digest("d")])
    assert existing.cut_bytes == 4
    assert not list(tmp_path.glob("*.rewrite"))


def test_duplicate_results_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(ok("a") + ok("a") + ok("b"))
    existing = recover(path)
    assert (existing.results, existing.duplicates, len(existing.done)) == (3, 1, 2)


def test_answer_lines_keep_the_body_bytes_unless_they_span_lines() -> None:
    compact = b'{"a": 1,  "b":[2]}'
    kept = orjson.loads(answer_line("i", "c", 200, "r", compact, orjson.loads(compact)))
    assert kept == {
        "id": "i",
        "custom_id": "c",
        "response": {"status_code": 200, "request_id": "r", "body": {"a": 1, "b": [2]}},
        "error": None,
    }
    assert compact in answer_line("i", "c", 200, "r", compact, orjson.loads(compact))
    pretty = b'{\n  "a": 1\n}\n'
    redone = answer_line("i", "c", 200, "r", pretty, orjson.loads(pretty))
    assert redone.count(b"\n") == 1 and read_result(redone) is not None
    html = answer_line("i", "c", 502, "r", b"<html>bad gateway</html>", None)
    assert orjson.loads(html)["response"]["body"]["error"]["message"] == "<html>bad gateway</html>"


def test_error_lines_follow_the_batch_output_format() -> None:
    document = orjson.loads(error_line("i", "c", "timeout", "no answer"))
    assert document == {
        "id": "i",
        "custom_id": "c",
        "response": None,
        "error": {"code": "timeout", "message": "no answer"},
    }
