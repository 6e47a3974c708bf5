"""`loadtest batch run` as a real process against simulated vLLM replicas: killed with SIGKILL
at random points and resumed, interrupted with Ctrl-C, starved of disk, fed bad input."""

import random
import re
import resource
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from openai.types import Completion
from openai.types.chat import ChatCompletion

from tests.procs import Proc, bin_path, free_port, start

MODEL = "sim-model"
CONCURRENCY = 8


def sim_argv(*extra: str, time_scale: float = 0.3) -> list[str]:
    return [
        bin_path("vllm-sim"),
        "serve",
        "--model",
        MODEL,
        "--profile",
        "tiny",
        "--port",
        "{port}",
        "--time-scale",
        str(time_scale),
        "--log-level",
        "warning",
        *extra,
    ]


def start_sim(time_scale: float) -> Proc:
    port = free_port()
    return start([a.format(port=port) for a in sim_argv(time_scale=time_scale)], port=port)


@pytest.fixture(scope="module")
def replica() -> Iterator[Proc]:
    """A replica slow enough (a run of 240 requests lasts ~2 s) to be killed mid-run.
    Deterministic: a request's `seed` fixes its answer."""
    proc = start_sim(4.0)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def instant() -> Iterator[Proc]:
    """The same replica without simulated time, for reference answers."""
    proc = start_sim(0.0)
    yield proc
    proc.stop()


def make_input(path: Path, n: int, seed: int) -> list[str]:
    """n requests of the three accepted shapes; returns their custom_ids in order."""
    rng = random.Random(seed)
    ids = []
    with path.open("wb") as sink:
        for i in range(n):
            body: dict[str, Any] = {
                "model": MODEL,
                "max_tokens": rng.randint(4, 40),
                "seed": rng.randrange(10**6),
            }
            shape = i % 3
            if shape == 0:
                body["messages"] = [{"role": "user", "content": f"question {i} of seed {seed}"}]
                line: dict[str, Any] = {
                    "custom_id": f"q{i}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": body,
                }
                ids.append(f"q{i}")
            elif shape == 1:
                line = {"custom_id": f"c{i}", **body, "prompt": f"complete {i}"}
                ids.append(f"c{i}")
            else:
                line = {**body, "messages": [{"role": "user", "content": f"plain {i}"}]}
                ids.append(f"line-{i + 1}")
            sink.write(orjson.dumps(line) + b"\n")
    return ids


def batch(
    target: str, tasks: Path, out: Path, *extra: str, preexec: Callable[[], None] | None = None
) -> subprocess.Popen[str]:
    argv = [bin_path("loadtest"), "batch", "run", "--target", target, "--input", str(tasks)]
    argv += ["--output", str(out), "--concurrency", str(CONCURRENCY), "--no-progress", *extra]
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=preexec
    )


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    output, _ = proc.communicate(timeout=timeout)
    return proc.returncode, output


def results(out: Path) -> dict[str, dict[str, Any]]:
    """The output's lines by custom_id; fails on a custom_id written twice."""
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    counts = Counter(line["custom_id"] for line in lines)
    assert [k for k, v in counts.items() if v > 1] == []
    return {line["custom_id"]: line for line in lines}


def answer(line: dict[str, Any]) -> bytes:
    """What the replica answered, less the fields that differ per response by design."""
    body = dict(line["response"]["body"])
    del body["id"], body["created"]
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def lines_in(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def served(replica: Proc) -> float:
    text = httpx.get(replica.url + "/metrics").text
    return sum(
        float(v) for v in re.findall(r"^vllm:request_success_total\{[^}]*\} (\S+)$", text, re.M)
    )


def kill_at_a_random_point(
    proc: subprocess.Popen[str], out: Path, n: int, rng: random.Random
) -> None:
    """SIGKILL once the output holds a random number of lines, or at a random early moment."""
    if rng.random() < 0.25:
        time.sleep(rng.uniform(0.0, 1.2))  # in start-up, the input check or the repair
    else:
        target = lines_in(out) + rng.randint(1, max(1, n // 3))
        deadline = time.monotonic() + 30
        while lines_in(out) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_killed_at_random_points_and_resumed_every_input_once_with_the_same_answers(
    replica: Proc, instant: Proc, tmp_path: Path, seed: int
) -> None:
    n = 240
    tasks = tmp_path / "tasks.jsonl"
    ids = make_input(tasks, n, seed)
    code, output = finish(batch(instant.url, tasks, tmp_path / "reference.jsonl"))
    assert code == 0, output
    reference = results(tmp_path / "reference.jsonl")

    rng = random.Random(seed)
    out = tmp_path / "out" / "results.jsonl"
    before = served(replica)
    kills = 0
    torn = b'{"id":"batch_req_x","custom_id":"q0","resp' + b"\x00" * 512
    unrepaired = False
    proc = batch(replica.url, tasks, out)
    for _ in range(4):
        kill_at_a_random_point(proc, out, n, rng)
        kills += 1
        data = out.read_bytes() if out.exists() else b""
        if unrepaired and data.endswith(torn):  # killed before the resume repaired it
            data = data[: -len(torn)]
        assert data.count(b"\n") <= n and (not data or data.endswith(b"\n"))  # whole lines only
        if kills == 2:  # as if a power cut left a torn line and zeros past it
            with out.open("ab") as sink:
                sink.write(torn)
            unrepaired = True
        proc = batch(replica.url, tasks, out, "--resume")
    code, output = finish(proc)
    assert code == 0, output
    assert "complete: every request has its result" in output

    got = results(out)
    assert sorted(got) == sorted(ids)
    for custom_id in ids:
        line = got[custom_id]
        assert line["error"] is None and line["response"]["status_code"] == 200
        assert answer(line) == answer(reference[custom_id]), custom_id
        body = line["response"]["body"]
        (ChatCompletion if body["object"] == "chat.completion" else Completion).model_validate(body)
    # Nothing written before a kill was sent again: at most the requests in flight at each kill.
    assert n <= served(replica) - before <= n + kills * CONCURRENCY
    assert any(
        p.read_bytes().startswith(torn[:20]) for p in out.parent.glob("results.jsonl.torn-*")
    )
    summary = orjson.loads((out.parent / "results.summary.json").read_bytes())
    assert summary["complete"] and summary["job"]["done"] == n and summary["job"]["ok"] == n


def test_a_replica_failing_30_percent_of_requests_still_yields_a_complete_output(
    spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    flaky = spawn(sim_argv("--fault-error-rate", "0.3", "--seed", "5"))
    tasks = tmp_path / "tasks.jsonl"
    ids = make_input(tasks, 150, seed=9)
    out = tmp_path / "results.jsonl"
    code, output = finish(
        batch(
            flaky.url,
            tasks,
            out,
            "--max-attempts",
            "12",
            "--backoff-base",
            "0.01",
            "--backoff-max",
            "0.05",
        )
    )
    assert code == 0, output
    got = results(out)
    assert sorted(got) == sorted(ids)
    assert {line["response"]["status_code"] for line in got.values()} == {200}
    run = orjson.loads((tmp_path / "results.summary.json").read_bytes())["run"]
    assert run["retries"] >= 20  # ~64 expected: the faults were there, and were retried


def running(replica: Proc) -> float:
    text = httpx.get(replica.url + "/metrics").text
    found = re.search(r"^vllm:num_requests_running\{[^}]*\} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def test_ctrl_c_drains_and_exits_resumable_and_a_second_one_stops_at_once(
    spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    sim = spawn(sim_argv("--fault-slow", "10", time_scale=1.0))
    tasks = tmp_path / "tasks.jsonl"
    ids = make_input(tasks, 60, seed=4)
    out = tmp_path / "results.jsonl"

    proc = batch(sim.url, tasks, out)
    deadline = time.monotonic() + 30
    while lines_in(out) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    code, output = finish(proc)
    assert code == 130, output
    assert "stopping: no new requests" in output and "--resume" in output
    drained = results(out)
    assert 2 <= len(drained) < 60
    summary = orjson.loads((tmp_path / "results.summary.json").read_bytes())
    assert summary["stop_reason"] == "interrupted" and not summary["complete"]

    # Now every answer takes tens of seconds: a drain would wait for them, a second Ctrl-C not.
    httpx.post(sim.url + "/sim/faults", json={"step_multiplier": 5000}).raise_for_status()
    proc = batch(sim.url, tasks, out, "--resume")
    deadline = time.monotonic() + 30
    while running(sim) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    stopped_at = time.monotonic()
    proc.send_signal(signal.SIGINT)
    code, output = finish(proc)
    assert code == 130, output
    assert time.monotonic() - stopped_at < 5.0
    assert results(out) == drained

    httpx.post(sim.url + "/sim/faults", json={"reset": True}).raise_for_status()
    code, output = finish(batch(sim.url, tasks, out, "--resume", "--concurrency", "32"))
    assert code == 0, output
    assert sorted(results(out)) == sorted(ids)


def test_a_full_disk_stops_the_run_with_whole_lines_and_resume_completes(
    replica: Proc, tmp_path: Path
) -> None:
    tasks = tmp_path / "tasks.jsonl"
    ids = make_input(tasks, 80, seed=7)
    out = tmp_path / "results.jsonl"
    limit = 20_000  # bytes any file of the process may reach: writes past it fail (EFBIG)

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    code, output = finish(batch(replica.url, tasks, out, preexec=small_disk))
    assert code == 1, output
    assert "cannot write" in output and "--resume" in output
    data = out.read_bytes()
    assert 0 < len(data) <= limit and data.endswith(b"\n")
    partial = results(out)
    code, output = finish(batch(replica.url, tasks, out, "--resume"))
    assert code == 0, output
    got = results(out)
    assert sorted(got) == sorted(ids)
    assert all(got[k] == v for k, v in partial.items())  # nothing written was redone


def test_invalid_lines_are_listed_before_anything_is_sent(instant: Proc, tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.jsonl"
    make_input(tasks, 5, seed=1)
    with tasks.open("ab") as sink:
        sink.write(b"{oops\n")
        sink.write(orjson.dumps({"custom_id": "q0", "model": MODEL, "prompt": "again"}) + b"\n")
    out = tmp_path / "results.jsonl"
    target = f"http://127.0.0.1:{free_port()}"  # nothing listens: sending anything would fail
    code, output = finish(batch(target, tasks, out))
    assert code == 2, output
    assert f"{tasks}:6: not JSON" in output
    assert f"{tasks}:7: custom_id 'q0' already on line 1" in output
    assert not out.exists()

    code, output = finish(
        batch(
            target,
            tasks,
            out,
            "--skip-invalid",
            "--stop-after-failures",
            "0",
            "--max-attempts",
            "1",
        )
    )
    errors = [
        orjson.loads(line)
        for line in (tmp_path / "results.invalid.jsonl").read_bytes().splitlines()
    ]
    assert [(e["line"], e["input"]) for e in errors] == [(6, "{oops"), (7, errors[1]["input"])]
    assert code == 0, output
    failed = results(out)  # the valid ones were sent, and failed: nothing listens
    assert len(failed) == 5 and {line["error"]["code"] for line in failed.values()} == {
        "connection_error"
    }

    code, output = finish(
        batch(instant.url, tasks, out, "--skip-invalid", "--resume", "--retry-failed")
    )
    assert code == 0, output
    assert "removed 5 failed results" in output
    assert {line["response"]["status_code"] for line in results(out).values()} == {200}


def test_the_output_of_another_input_is_refused_untouched(instant: Proc, tmp_path: Path) -> None:
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    make_input(first, 6, seed=1)
    make_input(second, 6, seed=2)
    with second.open("ab") as sink:  # custom_ids of its own
        sink.write(orjson.dumps({"custom_id": "other", "model": MODEL, "prompt": "x"}) + b"\n")
    out = tmp_path / "results.jsonl"
    assert finish(batch(instant.url, second, out))[0] == 0
    with out.open("ab") as sink:
        sink.write(b'{"torn')
    before = out.read_bytes()
    code, output = finish(batch(instant.url, first, out, "--resume", "--retry-failed"))
    assert code == 2 and "1 results whose custom_id is on no valid line" in output
    assert out.read_bytes() == before


def test_an_existing_output_is_never_overwritten(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.jsonl"
    make_input(tasks, 3, seed=1)
    out = tmp_path / "results.jsonl"
    out.write_bytes(b"precious\n")
    code, output = finish(batch("http://127.0.0.1:1", tasks, out))
    assert code == 2 and "--resume" in output
    assert out.read_bytes() == b"precious\n"
