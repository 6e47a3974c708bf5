"""`loadtest suite run` end to end against simulated replicas on 127.0.0.1: a testbench file
run unchanged (its server properties carried into every result), Ctrl-C and --resume, GPU
telemetry with NVML faked at its boundary, a concurrency search, and `suite compare`."""

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from loadtest.cli import app
from loadtest.suite.runner import RunOptions, run_suite
from loadtest.suite.spec import load_suite
from tests.loadtest.suite.test_gpu import fake_nvml
from tests.procs import Proc, bin_path

TINY = [
    bin_path("vllm-sim"),
    "serve",
    "--model",
    "sim/tiny",
    "--profile",
    "tiny",
    "--port",
    "{port}",
]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [bin_path("loadtest"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "160"},
        check=False,
    )


def only(directory: Path, pattern: str) -> Path:
    (found,) = directory.glob(pattern)
    return found


def test_a_testbench_file_runs_unchanged_and_its_results_carry_its_metadata(
    tmp_path: Path, spawn: Callable[..., Proc]
) -> None:
    sim = spawn(TINY)
    bench = {
        "benchmark": {"name": "tiny-context", "description": "two contexts", "target": sim.url},
        "model": {"name": "sim/tiny", "quantization": "fp8", "tensor_parallel_size": 2},
        "context_lengths": [256, 512],
        "requests": {
            "num_requests": 30,
            "concurrent_requests": 4,
            "arrival_pattern": "poisson",
            "rate_per_second": 20,
            "prompt_tokens_min": 10,
            "prompt_tokens_max": 20,
            "completion_tokens": 16,
        },
        "telemetry": {"enabled": True, "interval_seconds": 0.2, "gpu_metrics": ["power"]},
    }
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(bench, sort_keys=False))
    done = run_cli("suite", "run", str(path), "--out", str(tmp_path / "r"), "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "note: server properties recorded as metadata" in out
    assert "quantization=fp8, tensor_parallel_size=2" in out
    assert "concurrent_requests 4 not applied" in out
    assert out.count("GPU telemetry: none") == 1
    directory = only(tmp_path / "r", "suite-tiny-context-*")
    document = json.loads((directory / "suite.json").read_text())
    assert document["status"] == "finished"
    assert document["metadata"]["server"] == {"quantization": "fp8", "tensor_parallel_size": 2}
    rows = list(csv_rows(directory / "suite.csv"))
    assert [row["context_length"] for row in rows] == ["256", "512"]
    for row in rows:
        assert row["meta.server.quantization"] == "fp8"
        assert row["meta.server.tensor_parallel_size"] == "2"
        assert row["meta.telemetry.gpu_metrics"] == '["power"]'
        point = directory / row["directory"]
        records = [json.loads(line) for line in (point / "records.jsonl").read_text().splitlines()]
        assert len(records) == 30 and all(r["error_kind"] is None for r in records)
        # The prompt is the context length less the 16 output tokens (the simulator adds
        # its chat template's few tokens).
        context = int(row["context_length"])
        assert all(context - 16 <= r["prompt_tokens"] <= context for r in records)
        summary = json.loads((point / "summary.json").read_text())
        assert summary["point"] == {"context_length": context}
        assert (point / "replicas.jsonl").read_text().strip(), "replica /metrics not sampled"
        assert not (point / "gpu.jsonl").exists()
    assert not (directory / "gpu.jsonl").exists()
    html = (directory / "report.html").read_text()
    assert "quantization" in html and "Throughput against latency" in html
    assert html.count("<svg") >= 3


def csv_rows(path: Path) -> list[dict[str, str]]:
    import csv

    with path.open() as source:
        return list(csv.DictReader(source))


def test_an_interrupted_suite_resumes_from_the_last_finished_point(
    tmp_path: Path, spawn: Callable[..., Proc]
) -> None:
    sim = spawn(TINY)
    suite = {
        "name": "resumable",
        "targets": [sim.url],
        "workload": {
            "models": ["sim/tiny"],
            "prompt_tokens": 32,
            "output_tokens": 8,
            "arrival": {"process": "constant", "rate": 10},
            "requests": 30,
        },
        "sweep": {"rate": [15, 20, 25, 30]},
        "telemetry": {"gpu": False},
    }
    path = tmp_path / "resumable.yaml"
    path.write_text(yaml.safe_dump(suite))
    out = tmp_path / "r"
    argv = [bin_path("loadtest"), "suite", "run", str(path), "--out", str(out), "--no-progress"]
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        journal: Path | None = None
        while time.monotonic() < deadline and first.poll() is None:
            found = list(out.glob("suite-resumable-*/points.jsonl"))
            if found and len(found[0].read_text().splitlines()) >= 2:
                journal = found[0]
                break
            time.sleep(0.05)
        assert journal is not None, (tmp_path / "first.log").read_text()
        first.send_signal(signal.SIGINT)
        assert first.wait(timeout=60) == 130, (tmp_path / "first.log").read_text()
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
        log.close()
    said = (tmp_path / "first.log").read_text()
    assert "carry on with: loadtest suite run" in said and "--resume" in said
    directory = journal.parent
    kept = [json.loads(line) for line in journal.read_text().splitlines()]
    assert 2 <= len(kept) < 4
    assert json.loads((directory / "suite.json").read_text())["status"] == "interrupted"

    again = run_cli("suite", "run", str(path), "--out", str(out), "--no-progress", "--resume")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("finished earlier, kept") == len(kept)
    assert f"results in {directory}" in again.stdout
    document = json.loads((directory / "suite.json").read_text())
    assert document["status"] == "finished"
    assert [row["rate"] for row in document["points"]] == [15, 20, 25, 30]
    # The finished points were kept as they were, not measured again.
    assert [row["started_at"] for row in document["points"][: len(kept)]] == [
        entry["result"]["started_at"] for entry in kept
    ]
    assert len(journal.read_text().splitlines()) == 4
    # One directory per point: the interrupted one was measured afresh in its place.
    assert len(list(directory.glob("*/[0-9][0-9]-rate-*"))) == 4
    # Nothing is left unfinished: a second --resume has nothing to carry on.
    none_left = run_cli("suite", "run", str(path), "--out", str(out), "--resume")
    assert none_left.returncode == 2
    assert "no unfinished results of suite 'resumable'" in none_left.stdout


def suite_file(tmp_path: Path, name: str, body: dict[str, Any]) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, **body}))
    return path


def test_gpu_telemetry_is_written_beside_each_point_and_drawn(
    tmp_path: Path, spawn: Callable[..., Proc]
) -> None:
    sim = spawn(TINY)
    path = suite_file(
        tmp_path,
        "gpus",
        {
            "targets": [sim.url],
            "workload": {
                "models": ["sim/tiny"],
                "prompt_tokens": 32,
                "output_tokens": 8,
                "arrival": {"process": "constant", "rate": 20},
                "requests": 30,
            },
            "sweep": {"output_tokens": [8, 16]},
            "telemetry": {"interval": 0.1},
        },
    )
    said: list[str] = []
    nvml = fake_nvml()
    runs = [
        run_suite(
            load_suite(path), RunOptions(out=tmp_path / "r"), say=said.append, nvml=lambda: nvml
        )
        for _ in range(2)
    ]
    first = runs[0]
    assert first.status == "finished" and first.gpu.startswith("2 GPU(s) sampled")
    for outcome in first.targets[0].outcomes:
        lines = (first.directory / outcome.result.directory / "gpu.jsonl").read_text().splitlines()
        samples = [json.loads(line) for line in lines]
        assert samples and {s["gpu"] for s in samples} == {0, 1}
        assert all(outcome.result.started_at <= s["at"] <= outcome.result.ended_at for s in samples)
    assert (first.directory / "gpu.jsonl").read_text().strip()
    html = (first.directory / "report.html").read_text()
    assert "power (W)" in html and "GPU telemetry over time" in html

    compared = CliRunner().invoke(
        app,
        [
            "suite",
            "compare",
            str(runs[0].directory),
            str(runs[1].directory),
            "--out",
            str(tmp_path / "c"),
        ],
        env={"COLUMNS": "200"},
    )
    assert compared.exit_code == 0, compared.output
    assert "output_tokens=8" in compared.output and "output_tokens=16" in compared.output
    report = only(tmp_path / "c", "suite-compare-gpus-vs-gpus-*") / "report.html"
    text = report.read_text()
    assert "Points side by side" in text and "A output_tokens=8" not in text
    assert text.count("<svg") >= 2


def test_a_concurrency_search_finds_the_most_users_within_the_ttft_limit(
    tmp_path: Path, spawn: Callable[..., Proc]
) -> None:
    # Two seats at ~7 ms a token: a third user waits for a whole 32-token answer (~230 ms)
    # before its first token, so TTFT p99 passes 100 ms from 3 users on.
    sim = spawn(
        [
            bin_path("vllm-sim"),
            "serve",
            "--model",
            "m",
            "--profile",
            "llama-3.1-8b-h100",
            "--max-num-seqs",
            "2",
            "--port",
            "{port}",
        ]
    )
    path = suite_file(
        tmp_path,
        "users",
        {
            "targets": [sim.url],
            "workload": {
                "models": ["m"],
                "prompt_tokens": 64,
                "output_tokens": 32,
                "arrival": {"process": "concurrency", "concurrency": 1},
                "requests": 12,
            },
            "search": {"field": "concurrency", "max": 16, "meets": {"ttft_p99": 0.1}},
            "telemetry": {"gpu": False},
        },
    )
    run = run_suite(load_suite(path), RunOptions(out=tmp_path / "r"))
    (answer,) = run.targets[0].answers
    assert (answer.best, answer.failed_at) == (2, 3)
    document = json.loads((run.directory / "suite.json").read_text())
    assert document["targets"][0]["answers"][0]["text"].startswith("highest concurrency passing: 2")
    answered = [row["concurrency"] for row in document["points"] if row["answer"]]
    assert answered == [2]
    assert [row["concurrency"] for row in document["points"]] == [1, 2, 4, 3]
    assert "highest concurrency passing: 2" in (run.directory / "report.html").read_text()
