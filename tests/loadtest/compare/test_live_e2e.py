"""`loadtest compare` end to end: two local environments, each two tiny simulated replicas
behind a gateway: a small virtual sweep, then the live check (each side started, driven with
one short schedule and torn down, twice, A B B A), and the agreement of the two."""

import json
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.procs import bin_path

WORKLOAD = """\
description: tiny schedule for tests
models: {sim/tiny: 1.0}
prompt_tokens: {dist: uniform, min: 16, max: 64}
output_tokens: {dist: uniform, min: 4, max: 24}
arrival: {process: poisson, rate: 25}
requests: 50
seed: 3
slo: {ttft: 0.5, tpot: 0.05}
"""

REPLICA = "{model: sim/tiny, profile: tiny}"


def environments(bad_second_replica: bool = False) -> str:
    second = "{model: sim/tiny, profile: no-such-profile}" if bad_second_replica else REPLICA
    return (
        "environments:\n"
        f"  tiny-rr: {{strategy: round_robin, replicas: [{REPLICA}, {REPLICA}]}}\n"
        f"  tiny-qd: {{strategy: queue_depth, replicas: [{REPLICA}, {second}]}}\n"
    )


def marked_pids(marker: str) -> list[int]:
    """Processes (other than this one) whose environment carries `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"LT_TEST_MARKER={marker}".encode() in env.split(b"\0"):
            found.append(int(entry.name))
    return found


def wait_no_marked(marker: str, timeout_s: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    left = marked_pids(marker)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = marked_pids(marker)
    return left


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, object]:
    (tmp_path / "tiny.yaml").write_text(WORKLOAD)
    marker = uuid.uuid4().hex
    env = {**os.environ, "LT_TEST_MARKER": marker, "COLUMNS": "160"}
    return {"dir": tmp_path, "marker": marker, "env": env}


def compare_argv(tmp_path: Path, envs_file: Path) -> list[str]:
    return [
        bin_path("loadtest"),
        "compare",
        "tiny-rr",
        "tiny-qd",
        "--workload",
        str(tmp_path / "tiny.yaml"),
        "--environments",
        str(envs_file),
        "--requests",
        "50",
        "--time-scale",
        "1",
        "--sweep",
        "0.4:0.8:2",
        "--virtual-requests",
        "300",
        "--out",
        str(tmp_path / "results"),
        "--resamples",
        "200",
        "--no-progress",
    ]


def run_compare(setup: dict, envs_text: str, *extra: str) -> subprocess.CompletedProcess[str]:  # type: ignore[type-arg]
    """`loadtest compare` over the given environments file text, bounded at 150 s."""
    envs_file = setup["dir"] / "envs.yaml"
    envs_file.write_text(envs_text)
    return subprocess.run(
        [*compare_argv(setup["dir"], envs_file), *extra],
        capture_output=True,
        text=True,
        timeout=150,
        env=setup["env"],
        check=False,
    )


def test_compare_two_tiny_fleets_end_to_end(setup: dict) -> None:  # type: ignore[type-arg]
    marker = setup["marker"]
    done = run_compare(setup, environments())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verdict: over loads 0.40-0.80 of tiny-rr's saturation rate" in done.stdout
    assert "verdict: live at load" in done.stdout and "live agrees with virtual time" in done.stdout
    assert "ttft_p99_s" in done.stdout and "95% CI" in done.stdout
    where = re.search(r"results written to (\S+)", done.stdout)
    assert where is not None
    root = Path(where.group(1))
    assert root.name.startswith("compare-tiny-rr-vs-tiny-qd-")
    document = json.loads((root / "compare.json").read_text())
    assert document["verdict"] and len(document["sweep"]) == 2
    live = document["live"]
    assert live["requests"] == 50 and live["runs"] == 2
    assert live["agreement"]["of"] == 4
    figures = {d["figure"] for d in live["differences"]}
    assert {"ttft_p99_s", "goodput_rps", "itl_p50_s"} <= figures
    # A B B A: four runs, each with its records, summary and replica samples.
    runs = sorted(root / d for d in live["directories"])
    assert [p.relative_to(root).as_posix() for p in runs] == [
        "a-tiny-rr/run-1",
        "a-tiny-rr/run-2",
        "b-tiny-qd/run-1",
        "b-tiny-qd/run-2",
    ]
    for run in runs:
        records = (run / "records.jsonl").read_text().splitlines()
        assert len(records) == 50
        assert all(json.loads(line)["error_kind"] is None for line in records)
        summary = json.loads((run / "summary.json").read_text())
        # The gateway named the replica of every request; both replicas served.
        assert summary["figures"]["ok"] > 0 and len(summary["replicas"]) == 2
        assert (run / "replicas.jsonl").read_text().strip()  # sampled during the run
    started = sorted(runs, key=lambda p: json.loads((p / "summary.json").read_text())["started_at"])
    assert [p.parent.name[0] for p in started] == ["a", "b", "b", "a"]
    html = (root / "report.html").read_text()
    assert "Over load, in virtual time" in html and "Live check at load" in html
    assert html.count("<svg") >= 5
    assert "r0 tiny" in html and "r1 tiny" in html  # replicas labelled alike on both sides
    assert wait_no_marked(marker) == []


def test_a_side_that_fails_to_start_is_reported_and_cleaned_up(setup: dict) -> None:  # type: ignore[type-arg]
    marker = setup["marker"]
    # Before anything starts, virtual time already knows the profile does not exist.
    done = run_compare(setup, environments(bad_second_replica=True))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "environment 'tiny-qd': replica 1: unknown profile 'no-such-profile'" in done.stdout
    done = run_compare(setup, environments(bad_second_replica=True), "--live")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "did not start" in done.stdout
    assert "replica 1" in done.stdout  # names the process that failed
    assert wait_no_marked(marker) == []


def test_interrupt_during_a_run_stops_everything(setup: dict) -> None:  # type: ignore[type-arg]
    tmp_path, marker = setup["dir"], setup["marker"]
    envs_file = tmp_path / "envs.yaml"
    envs_file.write_text(environments())
    argv = compare_argv(tmp_path, envs_file)
    argv[argv.index("--requests") + 1] = "2000"  # long enough to be interrupted
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=setup["env"]
    )
    try:
        deadline = time.monotonic() + 30
        gateway_logs: list[Path] = []
        while not gateway_logs and time.monotonic() < deadline:
            time.sleep(0.2)
            gateway_logs = list((tmp_path / "results").glob("compare-*/a-*/run-1/logs/gateway.log"))
        assert gateway_logs, "side A never started its gateway"
        time.sleep(2.0)  # the environment is up and the run under way
        assert len(marked_pids(marker)) >= 3  # two replicas and a gateway
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:  # else its pipe fails a later test as unraisable
            proc.stdout.close()
    assert proc.returncode == 130, output
    assert "interrupted" in output
    assert wait_no_marked(marker) == []
