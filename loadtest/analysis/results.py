"""Write a run's results under results/<name>-<timestamp>/: records.jsonl, summary.json and
summary.csv. Other writers (reports, replica samples) add files to the same directory."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import orjson

from loadtest.analysis.summary import Summary, summarize_by_model
from loadtest.drive.records import RequestRecord
from loadtest.drive.runner import RunResult

PER_MODEL_FIGURES = (
    "requests",
    "error_rate",
    "throughput_rps",
    "output_tokens_per_s",
    "goodput_fraction",
    "ttft_p50_s",
    "ttft_p99_s",
    "tpot_p50_s",
    "tpot_p99_s",
    "e2e_p50_s",
    "e2e_p99_s",
    "prompt_tokens_served_ratio",
)


def run_dir(out: str | Path, name: str, result: RunResult) -> Path:
    """A new directory `<out>/<name>-<UTC start time>` (suffixed if it exists)."""
    stamp = result.started_at.strftime("%Y%m%d-%H%M%S")
    return new_dir(Path(out) / f"{name}-{stamp}")


def new_dir(base: Path) -> Path:
    """Make `base`, or `base-2`, `base-3`... if it exists; return the one made."""
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def summary_document(result: RunResult, summary: Summary) -> dict[str, Any]:
    schedule = result.schedule
    return {
        "workload": schedule.workload.name,
        "target": result.target_url,
        "started_at": result.started_at.isoformat(),
        "duration_s": result.duration_s,
        "seed": schedule.seed,
        "schedule": schedule.describe(),
        "closed_loop": result.closed_loop,
        "interrupted": result.interrupted,
        "lag": {"p50_s": result.lag.p50_s, "p99_s": result.lag.p99_s, "max_s": result.lag.max_s},
        "lag_ok": result.lag.ok,
        "read_delay": {
            "p50_s": result.read_delay.p50_s,
            "p99_s": result.read_delay.p99_s,
            "max_s": result.read_delay.max_s,
        },
        "read_delay_ok": result.read_delay.ok,
        "tokenizers": schedule.tokenizers.describe(m for m, _ in schedule.workload.models),
        "figures": summary.to_dict(),
        "replicas": dict(summary.replicas),
        "errors_by_kind": dict(summary.errors_by_kind),
        "per_model": {
            model: {key: figures[key] for key in PER_MODEL_FIGURES}
            for model, part in summarize_by_model(result.records, schedule.workload).items()
            for figures in [part.to_dict()]
        },
    }


def write_results(result: RunResult, summary: Summary, out: str | Path, name: str) -> Path:
    """Write the run's files into a new directory under `out`; return that directory."""
    path = run_dir(out, name, result)
    write_run_files(path, result, summary)
    return path


def write_run_files(
    path: Path, result: RunResult, summary: Summary, extra: dict[str, Any] | None = None
) -> None:
    """records.jsonl, summary.json (with `extra` added) and summary.csv in `path`."""
    with (path / "records.jsonl").open("wb") as sink:
        for record in result.records:
            sink.write(orjson.dumps(record.to_dict()) + b"\n")
    document = {**summary_document(result, summary), **(extra or {})}
    (path / "summary.json").write_bytes(
        orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    )
    with (path / "summary.csv").open("w", newline="") as sink:
        writer = csv.writer(sink)
        writer.writerow(["figure", "value"])
        for key, value in summary.to_dict().items():
            writer.writerow([key, "" if value is None else value])
        for replica, count in summary.replicas:
            writer.writerow([f"replica_requests:{replica}", count])
        for kind, count in summary.errors_by_kind:
            writer.writerow([f"errors:{kind}", count])


def read_records(path: str | Path) -> list[RequestRecord]:
    """The records of a results directory (or of a records.jsonl file)."""
    path = Path(path)
    if path.is_dir():
        path = path / "records.jsonl"
    with path.open("rb") as source:
        return [RequestRecord.from_dict(orjson.loads(line)) for line in source if line.strip()]
