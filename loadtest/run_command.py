"""The `loadtest run` and `loadtest workloads` commands."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from gateway.logs import configure_logging
from loadtest.progress import default_progress
from loadtest.results import write_results
from loadtest.runner import LAG_BUDGET_S, RunResult, run_schedule
from loadtest.schedule import build_schedule
from loadtest.summary import Summary, summarize
from loadtest.workload import WorkloadError, builtin_workloads, load_workload

T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on uvloop when it is installed (less CPU per request and chunk)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def workloads() -> None:
    """List the built-in workloads, one line each."""
    entries = builtin_workloads()
    width = max(len(name) for name in entries)
    for name, description in entries.items():
        typer.echo(f"{name:<{width}}  {description}")


def run(
    target: Annotated[str, typer.Option(help="Base URL of the OpenAI-compatible endpoint.")],
    workload: Annotated[
        str, typer.Option(help="A built-in workload name or a YAML file.")
    ] = "chat-mixed",
    rate: Annotated[
        float | None, typer.Option(help="Requests per second (open loop); overrides the workload.")
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Requests kept in flight (closed loop) instead of a rate.")
    ] = None,
    duration: Annotated[float | None, typer.Option(help="Seconds of arrivals.")] = None,
    requests: Annotated[int | None, typer.Option(help="Number of requests.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed; default: the workload's.")] = None,
    out: Annotated[Path, typer.Option(help="Directory for results.")] = Path("results"),
    api_key: Annotated[
        str | None, typer.Option(envvar="LOADTEST_API_KEY", help="Bearer token for the target.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show live progress.")] = True,
) -> None:
    """Drive TARGET with a workload, print a summary and write results/<name>-<time>/."""
    configure_logging("warning")
    console = Console()
    try:
        loaded = load_workload(workload)
        schedule = build_schedule(
            loaded,
            seed=seed,
            rate=rate,
            concurrency=concurrency,
            duration=duration,
            requests=requests,
        )
    except WorkloadError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    console.print(
        f"{loaded.name} -> {target}: {schedule.describe()}, seed {schedule.seed}",
        highlight=False,
        soft_wrap=True,
    )
    if schedule.closed_loop:
        console.print(
            "[yellow]closed loop:[/yellow] each slot sends its next request only when the last "
            "one ends, so a slow server also slows the arrivals (latencies are not open-loop).",
            highlight=False,
        )
    try:
        result = run_async(
            run_schedule(
                target,
                schedule,
                api_key=api_key,
                progress=default_progress() if progress else None,
            )
        )
    except KeyboardInterrupt:
        console.print("interrupted: no results written", highlight=False)
        raise typer.Exit(130) from None
    summary = summarize(result.records, loaded)
    print_summary(console, result, summary)
    path = write_results(result, summary, out, loaded.name)
    console.print(f"results written to {path}", highlight=False, soft_wrap=True)
    if summary.ok == 0:
        raise typer.Exit(1)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def print_summary(console: Console, result: RunResult, summary: Summary) -> None:
    """The summary as rich tables: totals, latencies, replicas, errors, and the lag verdict."""
    totals = Table(title="Summary", show_header=False)
    rows = [
        ("requests (measured)", f"{summary.requests} (+{summary.warmup_excluded} warm-up)"),
        ("ok / errors", f"{summary.ok} / {summary.errors} ({summary.error_rate:.1%})"),
        ("throughput", f"{summary.throughput_rps:.2f} req/s"),
        ("output tokens", f"{summary.output_tokens_per_s:.0f} tokens/s"),
        ("goodput", f"{summary.goodput_rps:.2f} req/s ({summary.goodput_fraction:.1%} meet SLO)"),
        ("window", f"{summary.window_s:.1f} s"),
    ]
    for key, value in rows:
        totals.add_row(key, value)
    console.print(totals)
    latency = Table(title="Latency (ms)")
    for column in ("", "p50", "p90", "p99", "max", "mean"):
        latency.add_column(column, justify="right")
    for name in ("ttft", "itl", "tpot", "e2e"):
        stats = getattr(summary, name)
        latency.add_row(
            name.upper(), *(_ms(getattr(stats, q)) for q in ("p50", "p90", "p99", "max", "mean"))
        )
    console.print(latency)
    if summary.replicas and summary.replicas != (("-", summary.ok),):
        spread = Table(title="Requests per replica")
        spread.add_column("replica")
        spread.add_column("requests", justify="right")
        for replica, count in summary.replicas:
            spread.add_row(replica, str(count))
        console.print(spread)
    failed = [r for r in result.records if not r.ok]
    if failed:
        kinds = Counter(r.error_kind for r in failed)
        line = ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items()))
        console.print(
            f"[red]errors[/red] (all {len(result.records)} requests, warm-up included): {line}",
            highlight=False,
            soft_wrap=True,
        )
        first = failed[0]
        console.print(
            f"  first: {first.error_kind}: {first.error}", highlight=False, soft_wrap=True
        )
    lag = result.lag
    if result.closed_loop:
        console.print("closed loop: no send lag (arrivals follow completions)")
    elif lag.ok:
        console.print(
            f"generator lag p50 {_ms(lag.p50_s)} ms, p99 {_ms(lag.p99_s)} ms "
            f"(under the {LAG_BUDGET_S * 1000:.0f} ms budget)",
            highlight=False,
        )
    else:
        console.print(
            f"[yellow]warning:[/yellow] generator lag p99 {_ms(lag.p99_s)} ms exceeds "
            f"{LAG_BUDGET_S * 1000:.0f} ms: the figures describe this client as much as the "
            "server; lower the rate or use a faster machine.",
            highlight=False,
        )
    sys.stdout.flush()
