"""`loadtest run` and `loadtest workloads` as a user runs them."""

import csv
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import yaml

from loadtest.results import read_records
from tests.procs import Proc, bin_path, free_port


def loadtest(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [bin_path("loadtest"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
    )


def test_workloads_lists_builtins_one_line_each(tmp_path: Path) -> None:
    result = loadtest("workloads", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == [
        "bursty",
        "chat-mixed",
        "long-context",
        "shared-prefix",
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
    with (run_dir / "summary.csv").open() as source:
        rows = {row["figure"]: row["value"] for row in csv.DictReader(source)}
    assert float(rows["ttft_p50_s"]) >= 0.02


def test_run_against_a_down_target_reports_and_exits_nonzero(tmp_path: Path) -> None:
    target = f"http://127.0.0.1:{free_port()}"
    result = loadtest(
        "run", "--target", target, "--requests", "3", "--out", str(tmp_path), cwd=tmp_path
    )
    assert result.returncode == 1
    assert "connect 3" in result.stdout
    assert "Traceback" not in result.stderr


def test_malformed_workload_stops_with_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"models": ["m"], "output_tokens": 5, "requests": 3}))
    target = "http://127.0.0.1:1"
    result = loadtest("run", "--target", target, "--workload", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert "prompt_tokens: missing" in result.stdout
    assert "Traceback" not in result.stderr
