"""`loadtest batch run`: a JSONL file of requests through a target, crash-safe and resumable."""

from __future__ import annotations

import asyncio
import shlex
import signal
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import orjson
import typer
from rich.console import Console

from loadtest.batch.progress import default_batch_progress
from loadtest.batch.recover import DamagedOutput, Existing, recover
from loadtest.batch.retry import RetryPolicy
from loadtest.batch.runner import BatchOptions, BatchRunner, Session
from loadtest.batch.scan import InputIndex, Problem, pending, plan, problems, scan
from loadtest.batch.summary import print_summary, summarize, summary_path, write_summary
from loadtest.batch.writer import OutputBusy, OutputLock, ResultWriter
from loadtest.drive.runner import run_async
from turnout.logs import configure_logging

batch_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Batch jobs: a JSONL file of OpenAI requests through a target (docs/batch.md).",
)

SHOWN_PROBLEMS = 20


def _fail(console: Console, message: str, code: int = 2) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@batch_app.command("run")
def run(
    target: Annotated[str, typer.Option(help="Base URL of the OpenAI-compatible endpoint.")],
    input_path: Annotated[
        Path, typer.Option("--input", help="JSONL: one request body or Batch API line a line.")
    ],
    output: Annotated[Path, typer.Option(help="JSONL results, OpenAI Batch output format.")],
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1, help="Requests in flight at most.", show_default="64; 1024 with --rate"
        ),
    ] = None,
    rate: Annotated[
        float | None, typer.Option(min=0.001, help="Requests per second at most (retries count).")
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue the job in --output: send only what has no result.")
    ] = False,
    retry_failed: Annotated[
        bool, typer.Option(help="With --resume: also send again what has a result but not a 200.")
    ] = False,
    skip_invalid: Annotated[
        bool, typer.Option(help="Send the valid lines; list invalid ones in --errors-file.")
    ] = False,
    errors_file: Annotated[
        Path | None,
        typer.Option(
            help="Where --skip-invalid lists invalid lines.",
            show_default="<output stem>.invalid.jsonl",
        ),
    ] = None,
    max_attempts: Annotated[int, typer.Option(min=1, help="Attempts per request, at most.")] = 8,
    attempt_timeout: Annotated[
        float, typer.Option(min=0.001, help="Seconds for one attempt's whole answer.")
    ] = 600.0,
    deadline: Annotated[
        float, typer.Option(min=0.001, help="Seconds per request, all attempts and waits.")
    ] = 3600.0,
    backoff_base: Annotated[
        float, typer.Option(min=0.0, help="First backoff ceiling in seconds (doubles per retry).")
    ] = 0.5,
    backoff_max: Annotated[float, typer.Option(min=0.0, help="Largest backoff in seconds.")] = 30.0,
    fsync_interval: Annotated[
        float, typer.Option(min=0.001, help="Seconds between fsyncs of the output.")
    ] = 1.0,
    stop_after_failures: Annotated[
        int, typer.Option(min=0, help="Stop after this many requests in a row failed (0: never).")
    ] = 100,
    api_key: Annotated[
        str | None, typer.Option(envvar="LOADTEST_API_KEY", help="Bearer token for the target.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show live progress.")] = True,
    seed: Annotated[int | None, typer.Option(help="Seed of the backoff jitter.")] = None,
) -> None:
    """Send every request of --input to --target and append each result to --output as it
    completes. Safe to kill at any time: run again with --resume to finish the job."""
    configure_logging("warning")
    console = Console(stderr=True)
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _fail(console, f"--target must be an http(s) URL, got {target!r}")
    if retry_failed and not resume:
        raise _fail(console, "--retry-failed continues a job: use it with --resume")
    if not input_path.is_file():
        raise _fail(console, f"--input {input_path}: no such file")
    if output.exists() and output.stat().st_size and not resume:
        raise _fail(
            console,
            f"{output} already holds results: add --resume to continue that job, "
            "or choose another --output",
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        lock = OutputLock(output)
    except OutputBusy as exc:
        raise _fail(console, str(exc)) from None
    try:
        code = _job(
            console,
            target=target,
            input_path=input_path,
            output=output,
            resume=resume,
            retry_failed=retry_failed,
            skip_invalid=skip_invalid,
            errors_file=errors_file or output.with_name(output.stem + ".invalid.jsonl"),
            options=BatchOptions(
                target=target,
                concurrency=concurrency or (1024 if rate else 64),
                rate=rate,
                retry=RetryPolicy(
                    max_attempts=max_attempts,
                    backoff_base_s=backoff_base,
                    backoff_max_s=backoff_max,
                    attempt_timeout_s=attempt_timeout,
                    deadline_s=deadline,
                ),
                api_key=api_key,
                stop_after_failures=stop_after_failures,
                seed=seed,
            ),
            fsync_interval=fsync_interval,
            show_progress=progress,
        )
    except KeyboardInterrupt:  # before sending started (the check of a long input)
        console.print("interrupted before anything was sent", highlight=False)
        code = 130
    finally:
        lock.release()
    raise typer.Exit(code)


def _job(
    console: Console,
    *,
    target: str,
    input_path: Path,
    output: Path,
    resume: bool,
    retry_failed: bool,
    skip_invalid: bool,
    errors_file: Path,
    options: BatchOptions,
    fsync_interval: float,
    show_progress: bool,
) -> int:
    started_at = datetime.now(UTC).isoformat()
    console.print(f"checking {input_path} ...", highlight=False, soft_wrap=True)
    index = scan(input_path)
    found = index.problem_count
    if found and not skip_invalid:
        _show_problems(console, index, found)
        console.print(
            f"nothing was sent. Fix these lines, or add --skip-invalid to send the others and "
            f"list these in {errors_file}.",
            highlight=False,
            soft_wrap=True,
        )
        return 2
    if found:
        _write_errors_file(errors_file, problems(index))
        console.print(
            f"[yellow]skipping {found:,} invalid or duplicate lines[/yellow], listed in "
            f"{errors_file}",
            highlight=False,
            soft_wrap=True,
        )
    try:
        # Read only first: an output that belongs to another input is refused untouched.
        existing = recover(output, repair=False)
        foreign = plan(index, existing.done).unknown
        if foreign:
            console.print(
                f"[red]error:[/red] {output} has {foreign:,} results whose custom_id is on no "
                f"valid line of {input_path}: is it the output of another input?",
                highlight=False,
                soft_wrap=True,
            )
            return 2
        if existing.cut_bytes or retry_failed:
            existing = recover(output, retry_failed=retry_failed)
    except DamagedOutput as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        return 2
    _describe_existing(console, output, existing, resume)
    todo = plan(index, existing.done)
    requests = index.requests
    console.print(
        f"{requests:,} requests in {input_path}: {todo.done:,} done, {todo.to_send:,} to send "
        f"-> {target}",
        highlight=False,
        soft_wrap=True,
    )
    session: Session | None = None
    if todo.to_send:
        writer = ResultWriter(output, fsync_interval_s=fsync_interval)
        try:
            runner = BatchRunner(
                pending(index, todo.todo),
                writer,
                options,
                total=requests,
                done_before=todo.done,
                failed_before=existing.failed,
                progress=default_batch_progress() if show_progress else None,
            )
            del todo, index  # the per-line plan is in the runner's reader now
            session = run_async(_until_interrupted(console, runner))
        finally:
            try:
                writer.close()
            except OSError as exc:  # a full disk may refuse even the fsync
                console.print(f"[red]error:[/red] closing {output}: {exc}", highlight=False)
    summary = summarize(
        input_path=input_path,
        output=output,
        target=target,
        started_at=started_at,
        requests=requests,
        invalid_skipped=found,
        before=existing,
        session=session,
    )
    print_summary(console, summary)
    try:
        write_summary(summary_path(output), summary)
    except OSError as exc:
        console.print(f"[red]error:[/red] writing the summary: {exc}", highlight=False)
    return _verdict(console, summary.job.remaining, summary.job.failed, session, output)


async def _until_interrupted(console: Console, runner: BatchRunner) -> Session:
    """The run, where a first Ctrl-C (or SIGTERM) drains and a second one stops at once."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    started = time.perf_counter()

    def interrupt() -> None:
        if runner.stop_event.is_set():
            if task is not None:
                task.cancel()
            return
        runner.stop_event.set()
        console.print(
            "stopping: no new requests; those in flight finish and are kept "
            "(Ctrl-C again to stop at once)",
            highlight=False,
        )

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupt)
    try:
        return await runner.run()
    except asyncio.CancelledError:
        if task is not None:
            task.uncancel()
        return Session(runner.counters, time.perf_counter() - started, "abandoned")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _show_problems(console: Console, index: InputIndex, found: int) -> None:
    shown = 0
    for problem in problems(index):
        console.print(
            f"{index.path}:{problem.line}: {problem.message}", highlight=False, soft_wrap=True
        )
        shown += 1
        if shown == SHOWN_PROBLEMS:
            break
    if found > shown:
        console.print(f"... and {found - shown:,} more", highlight=False)


def _write_errors_file(path: Path, found: Iterable[Problem]) -> None:
    scratch = path.with_name(path.name + ".tmp")
    with scratch.open("wb") as sink:
        for problem in found:
            entry = {
                "line": problem.line,
                "error": problem.message,
                "input": problem.text.decode("utf-8", "replace"),
            }
            sink.write(orjson.dumps(entry) + b"\n")
    scratch.replace(path)


def _describe_existing(console: Console, output: Path, existing: Existing, resume: bool) -> None:
    if existing.cut_bytes:
        console.print(
            f"[yellow]repaired[/yellow] {output}: cut a torn end of {existing.cut_bytes:,} bytes "
            f"(kept in {existing.cut_saved}); those requests are sent again",
            highlight=False,
            soft_wrap=True,
        )
    if existing.dropped_failed:
        console.print(
            f"--retry-failed: removed {existing.dropped_failed:,} failed results to send again",
            highlight=False,
        )
    if existing.duplicates:
        console.print(
            f"[yellow]warning:[/yellow] {output} has {existing.duplicates:,} results for a "
            "custom_id that already had one",
            highlight=False,
            soft_wrap=True,
        )
    if resume and existing.results:
        console.print(
            f"resuming: {existing.results:,} results already in {output} "
            f"({existing.ok:,} ok, {existing.failed:,} failed)",
            highlight=False,
            soft_wrap=True,
        )
    elif resume:
        console.print(f"--resume: {output} holds no results yet; starting", highlight=False)


def _resume_command() -> str:
    argv = [Path(sys.argv[0]).name, *sys.argv[1:]]
    argv = [a for a in argv if a != "--retry-failed"]
    if "--resume" not in argv:
        argv.append("--resume")
    return shlex.join(argv)


def _verdict(
    console: Console, remaining: int, failed: int, session: Session | None, output: Path
) -> int:
    """The closing line and the exit code: 0 complete, 1 stopped early, 130 interrupted."""
    if remaining == 0:
        console.print(f"complete: every request has its result in {output}", highlight=False)
        if failed:
            console.print(
                f"[yellow]{failed:,} requests failed for good[/yellow] (their lines say why); "
                f"send them again with: {_resume_command()} --retry-failed",
                highlight=False,
                soft_wrap=True,
            )
        return 0
    reason = session.stop_reason if session is not None else None
    left = f"{remaining:,} requests have no result yet; continue with: {_resume_command()}"
    if reason == "failures" and session is not None:
        in_a_row = session.counters.consecutive_failures
        console.print(
            f"[red]stopped:[/red] the last {in_a_row} requests all failed for good "
            f"({session.error}): is the target up, and are the requests right? {left} "
            "(add --retry-failed to send the failed ones again)",
            highlight=False,
            soft_wrap=True,
        )
        return 1
    if reason == "error":
        error = session.error if session is not None else None
        console.print(f"[red]stopped:[/red] {error}. {left}", highlight=False, soft_wrap=True)
        return 1
    console.print(f"[yellow]stopped:[/yellow] {left}", highlight=False, soft_wrap=True)
    return 130
