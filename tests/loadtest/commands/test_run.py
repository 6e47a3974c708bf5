"""`loadtest run` and `loadtest workloads` as a user runs them."""

import csv
import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import yaml

from loadtest.analysis.results import read_records
from tests.loadtest.helpers import loadtest
from tests.procs import Proc, bin_path, free_port


def test_workloads_lists_builtins_one_line_each(tmp_path: Path) -> None:
    result = loadtest("workloads", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == [
        "bursty",
        "chat-mixed",
        "long-context",
        "mixed-lengths",
        "shared-documents",
        "shared-prefix",
        "shifting-models",
        "spark-chat",
        "spark-qwen3-chat",
    ]


def test_run_prints_a_summary_and_writes_results(
    fake_openai: Callable[..., Proc], tmp_path: Path
) -> None:
    server = fake_openai(ttft=0.02, gap=0.002, replica="r9", fail_every=5)
    result = loadtest(
        "run",
        "--target",
        server.url,
        "--workload",
        "chat-mixed",
        "--rate",
        "40",
        "--requests",
        "20",
        "--seed",
        "3",
        "--out",
        str(tmp_path / "out"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for expected in ("Summary", "TTFT", "TPOT", "r9", "http_5xx 4", "generator lag", "results"):
        assert expected in out, out
    (run_dir,) = (tmp_path / "out").iterdir()
    assert run_dir.name.startswith("chat-mixed-")
    assert str(run_dir) in out.replace("\n", "")
    records = read_records(run_dir)
    assert len(records) == 20
    assert sum(1 for r in records if r.error_kind == "http_5xx") == 4
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["seed"] == 3
    assert summary["figures"]["requests"] + summary["figures"]["warmup_excluded"] == 20
    assert summary["replicas"] == {"r9": summary["figures"]["ok"]}
    per_model = summary["per_model"]
    assert set(per_model) <= {r.model for r in records}
    assert sum(part["requests"] for part in per_model.values()) == summary["figures"]["requests"]
    assert "Per model" in out
    with (run_dir / "summary.csv").open() as source:
        rows = {row["figure"]: row["value"] for row in csv.DictReader(source)}
    assert float(rows["ttft_p50_s"]) >= 0.02
    # No /admin/replicas and no /metrics: the run goes on, unsampled, and says so.
    assert "replica state not sampled" in out
    assert (run_dir / "replicas.jsonl").read_text() == ""
    assert f"report: {run_dir / 'report.html'}" in out.replace("\n", "")
    html = (run_dir / "report.html").read_text()
    assert html.count("<svg") == 3 and "No replica samples" in html
    assert "r9" in html


def test_run_against_a_down_target_reports_and_exits_nonzero(tmp_path: Path) -> None:
    target = f"http://127.0.0.1:{free_port()}"
    result = loadtest(
        "run", "--target", target, "--requests", "3", "--out", str(tmp_path), cwd=tmp_path
    )
    assert result.returncode == 1
    assert "connect 3" in result.stdout
    assert "Traceback" not in result.stderr
    assert "Warning" not in result.stderr  # nothing to plot is not matplotlib's problem
    (run_dir,) = tmp_path.glob("chat-mixed-*")
    assert "No replica samples" in (run_dir / "report.html").read_text()


def test_malformed_workload_stops_with_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"models": ["m"], "output_tokens": 5, "requests": 3}))
    target = "http://127.0.0.1:1"
    result = loadtest("run", "--target", target, "--workload", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert "prompt_tokens: missing" in result.stdout
    assert "Traceback" not in result.stderr


def test_target_must_be_an_http_url(tmp_path: Path) -> None:
    result = loadtest("run", "--target", "localhost:8000", cwd=tmp_path)
    assert result.returncode == 2
    assert "--target must be an http(s) URL" in result.stdout


def test_ctrl_c_stops_sending_waits_for_answers_and_writes_results(
    fake_openai: Callable[..., Proc], tmp_path: Path
) -> None:
    server = fake_openai(ttft=0.3, gap=0.01)
    argv = [bin_path("loadtest"), "run", "--target", server.url, "--rate", "10"]
    argv += ["--requests", "100", "--out", str(tmp_path), "--no-progress"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # Interrupt once it is well under way (however long its start-up takes here).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if httpx.get(server.url + "/fake/received", timeout=5).json()["received"] >= 8:
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, out
    assert "stopping: no new requests" in out
    (run_dir,) = tmp_path.glob("chat-mixed-*")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["interrupted"] is True
    records = read_records(run_dir)
    assert 5 <= len(records) < 100
    assert all(r.ok for r in records)  # those in flight were waited for, not cut
