"""The end of a batch run: what the job holds now and what this run did, printed and written
as JSON beside the output (`<output stem>.summary.json`)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from loadtest.batch.progress import duration
from loadtest.batch.recover import Existing
from loadtest.batch.runner import Session


@dataclass(frozen=True)
class JobFigures:
    """The whole job, earlier runs included."""

    requests: int  # valid input lines
    invalid_skipped: int
    done: int
    ok: int
    failed: int
    remaining: int
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class RunFigures:
    """This run alone."""

    results: int
    ok: int
    failed: int
    retries: int
    attempts: int
    left_for_resume: int
    prompt_tokens: int
    completion_tokens: int
    wall_time_s: float
    requests_per_s: float
    prompt_tokens_per_s: float
    output_tokens_per_s: float


@dataclass(frozen=True)
class BatchSummary:
    input: str
    output: str
    target: str
    started_at: str
    stop_reason: str | None
    error: str | None
    job: JobFigures
    run: RunFigures

    @property
    def complete(self) -> bool:
        return self.job.remaining == 0

    def to_dict(self) -> dict[str, Any]:
        run = self.run
        return {
            "kind": "batch",
            "input": self.input,
            "output": self.output,
            "target": self.target,
            "started_at": self.started_at,
            "complete": self.complete,
            "stop_reason": self.stop_reason,
            "error": self.error,
            "job": asdict(self.job),
            "run": asdict(run),
            # The same names as a `loadtest run` summary.json, for `loadtest cost --from`.
            "figures": {
                "window_s": run.wall_time_s,
                "throughput_rps": run.requests_per_s,
                "prompt_tokens_per_s": run.prompt_tokens_per_s,
                "output_tokens_per_s": run.output_tokens_per_s,
            },
        }


def summary_path(output: Path) -> Path:
    return output.with_name(output.stem + ".summary.json")


def summarize(
    *,
    input_path: Path,
    output: Path,
    target: str,
    started_at: str,
    requests: int,
    invalid_skipped: int,
    before: Existing,
    session: Session | None,
) -> BatchSummary:
    c = session.counters if session is not None else None
    wall = session.duration_s if session is not None else 0.0
    ok, failed = (c.ok, c.failed) if c is not None else (0, 0)
    prompt, completion = (c.prompt_tokens, c.completion_tokens) if c is not None else (0, 0)
    done = before.results - before.duplicates + ok + failed

    def per_s(value: int) -> float:
        return value / wall if wall > 0 else 0.0

    return BatchSummary(
        input=str(input_path),
        output=str(output),
        target=target,
        started_at=started_at,
        stop_reason=session.stop_reason if session is not None else None,
        error=session.error if session is not None else None,
        job=JobFigures(
            requests=requests,
            invalid_skipped=invalid_skipped,
            done=done,
            ok=before.ok + ok,
            failed=before.failed + failed,
            remaining=requests - done,
            prompt_tokens=before.prompt_tokens + prompt,
            completion_tokens=before.completion_tokens + completion,
        ),
        run=RunFigures(
            results=ok + failed,
            ok=ok,
            failed=failed,
            retries=c.retries if c is not None else 0,
            attempts=c.attempts if c is not None else 0,
            left_for_resume=c.left if c is not None else 0,
            prompt_tokens=prompt,
            completion_tokens=completion,
            wall_time_s=wall,
            requests_per_s=per_s(ok + failed),
            prompt_tokens_per_s=per_s(prompt),
            output_tokens_per_s=per_s(completion),
        ),
    )


def write_summary(path: Path, summary: BatchSummary) -> None:
    """Replace `path` whole (a crash leaves the old summary or the new one, never half)."""
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_bytes(orjson.dumps(summary.to_dict(), option=orjson.OPT_INDENT_2))
    os.replace(scratch, path)


def print_summary(console: Console, summary: BatchSummary) -> None:
    job, run = summary.job, summary.run
    table = Table(title="Batch", show_header=True)
    table.add_column("")
    table.add_column("this run", justify="right")
    table.add_column("whole job", justify="right")
    rows = [
        ("results", f"{run.results:,}", f"{job.done:,} of {job.requests:,}"),
        ("ok", f"{run.ok:,}", f"{job.ok:,}"),
        ("failed", f"{run.failed:,}", f"{job.failed:,}"),
        ("tokens in", f"{run.prompt_tokens:,}", f"{job.prompt_tokens:,}"),
        ("tokens out", f"{run.completion_tokens:,}", f"{job.completion_tokens:,}"),
        ("retries", f"{run.retries:,}", ""),
        ("wall time", duration(run.wall_time_s), ""),
        ("requests/s", f"{run.requests_per_s:,.1f}", ""),
        (
            "tokens/s in / out",
            f"{run.prompt_tokens_per_s:,.0f} / {run.output_tokens_per_s:,.0f}",
            "",
        ),
    ]
    if job.invalid_skipped:
        rows.append(("invalid lines skipped", "", f"{job.invalid_skipped:,}"))
    for row in rows:
        table.add_row(*row)
    console.print(table)
