"""The `loadtest run` and `loadtest workloads` commands."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.table import Table

from loadtest.analysis.checks import prompt_length_warnings, read_delay_line
from loadtest.analysis.results import write_results
from loadtest.analysis.summary import Summary, summarize, summarize_by_model
from loadtest.drive.progress import ProgressSink, default_progress
from loadtest.drive.runner import LAG_BUDGET_S, RunResult, run_async
from loadtest.environments.identity import is_simulated
from loadtest.environments.sampler import (
    ReplicaSampler,
    sampled_run,
    target_sampler,
    write_samples,
)
from loadtest.workload import WorkloadError, builtin_workloads, load_workload
from loadtest.workload.counting import TokenizerChoice, TokenizerError, load_tokenizers
from loadtest.workload.schedule import Schedule, build_schedule
from turnout.logs import configure_logging

TOKENIZER_HELP = (
    "Size prompts with this tokenizer, chat template included: a directory holding "
    "tokenizer.json, or a model name in the local Hugging Face cache (offline). MODEL=NAME "
    "for one model; repeat for several. Default: the simulator's approximate tokenizer."
)


def no_tokenizer_warning(where: str) -> str:
    return (
        f"[yellow]warning:[/yellow] no --tokenizer and {where} is not vllm-sim: prompt "
        "lengths follow the simulator's approximate tokenizer, so the target will count "
        "other lengths (see the served/asked check after the run)."
    )


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
    admin_key: Annotated[
        str | None,
        typer.Option(
            envvar="LOADTEST_ADMIN_KEY", help="Bearer key for a gateway's /admin (sampling)."
        ),
    ] = None,
    tokenizer: Annotated[list[str] | None, typer.Option(help=TOKENIZER_HELP)] = None,
) -> None:
    """Drive TARGET with a workload, print a summary and write results/<name>-<time>/
    (records, summary, replica samples and report.html)."""
    configure_logging("warning")
    console = Console()
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        console.print(
            f"[red]error:[/red] --target must be an http(s) URL such as http://127.0.0.1:8080, "
            f"got {target!r}",
            highlight=False,
        )
        raise typer.Exit(2)
    try:
        choice = TokenizerChoice.parse(tokenizer or ())
        loaded = load_workload(workload)
        schedule = build_schedule(
            loaded,
            seed=seed,
            rate=rate,
            concurrency=concurrency,
            duration=duration,
            requests=requests,
            tokenizers=load_tokenizers(choice),
        )
    except (WorkloadError, TokenizerError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    models = [name for name, _ in loaded.models]
    console.print(
        f"{loaded.name} -> {target}: {schedule.describe()}, seed {schedule.seed}; prompts "
        f"sized with {choice.describe(models)}",
        highlight=False,
        soft_wrap=True,
    )
    if not choice.given and not is_simulated(target, admin_key=admin_key):
        console.print(no_tokenizer_warning(target), highlight=False, soft_wrap=True)
    if schedule.closed_loop:
        console.print(
            "[yellow]closed loop:[/yellow] each slot sends its next request only when the last "
            "one ends, so a slow server also slows the arrivals (latencies are not open-loop).",
            highlight=False,
        )
    sink = default_progress() if progress else None
    sampler = target_sampler(target, admin_key)
    try:
        result = run_async(
            _run_until_interrupted(console, target, schedule, api_key, sink, sampler)
        )
    except (KeyboardInterrupt, asyncio.CancelledError):
        console.print("abandoned: no results written", highlight=False)
        raise typer.Exit(130) from None
    summary = summarize(result.records, loaded)
    print_summary(console, result, summary)
    for line in prompt_length_warnings(result.records, tokenizer_given=choice.given):
        console.print(f"[yellow]warning:[/yellow] {line}", highlight=False, soft_wrap=True)
    path = write_results(result, summary, out, loaded.name)
    write_samples(sampler.samples, path / "replicas.jsonl")
    console.print(
        f"{sampler.describe()} ({len(sampler.samples)} samples)", highlight=False, soft_wrap=True
    )
    # matplotlib takes seconds to import: only once the run is over.
    from loadtest.analysis.report import write_run_report

    report = write_run_report(path, result, summary, loaded, sampler.samples)
    console.print(f"results written to {path}", highlight=False, soft_wrap=True)
    console.print(f"report: {report}", highlight=False, soft_wrap=True)
    if result.interrupted:
        raise typer.Exit(130)
    if summary.ok == 0:
        raise typer.Exit(1)


async def _run_until_interrupted(
    console: Console,
    target: str,
    schedule: Schedule,
    api_key: str | None,
    progress: ProgressSink | None,
    sampler: ReplicaSampler,
) -> RunResult:
    """The sampled run, where a first Ctrl-C stops sending and waits for the requests in
    flight, and a second one abandons them."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    task = asyncio.current_task()

    def interrupt() -> None:
        if stop.is_set() and task is not None:
            task.cancel()
            return
        stop.set()
        console.print(
            "stopping: no new requests; waiting for those in flight (Ctrl-C again to abandon)",
            highlight=False,
        )

    loop.add_signal_handler(signal.SIGINT, interrupt)
    try:
        return await sampled_run(
            target, schedule, sampler, api_key=api_key, progress=progress, stop=stop
        )
    finally:
        loop.remove_signal_handler(signal.SIGINT)


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
    if summary.prompt_tokens_ratio is not None:
        rows.append(
            (
                "prompt tokens served / asked",
                f"{summary.prompt_tokens_served:,} / {summary.prompt_tokens_requested:,} "
                f"({summary.prompt_tokens_ratio - 1:+.1%})",
            )
        )
    for key, value in rows:
        totals.add_row(key, value)
    console.print(totals)
    latency = Table(title="Latency (ms)")
    for column in ("", "p50", "p90", "p99", "max", "mean"):
        latency.add_column(column, justify="right")
    names = ["ttft", "itl", "tpot", "e2e"]
    if any(r.blank_chunks for r in result.records):
        # Some token chunks had no text: when text appeared differs from when tokens did.
        names += ["ttft_visible", "itl_visible"]
    for name in names:
        stats = getattr(summary, name)
        latency.add_row(
            name.upper().replace("_VISIBLE", " (visible text)"),
            *(_ms(getattr(stats, q)) for q in ("p50", "p90", "p99", "max", "mean")),
        )
    console.print(latency)
    by_model = summarize_by_model(result.records, result.schedule.workload)
    if len(by_model) > 1:
        models = Table(title="Per model (ms)")
        models.add_column("model")
        for column in ("requests", "errors", "TTFT p50", "TTFT p99", "TPOT p50", "E2E p99"):
            models.add_column(column, justify="right")
        for model, part in by_model.items():
            models.add_row(
                model,
                str(part.requests),
                str(part.errors),
                _ms(part.ttft.p50),
                _ms(part.ttft.p99),
                _ms(part.tpot.p50),
                _ms(part.e2e.p99),
            )
        console.print(models)
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
    if result.interrupted:
        console.print(
            f"[yellow]interrupted:[/yellow] {len(result.records)} of "
            f"{len(result.schedule.requests)} scheduled requests were sent",
            highlight=False,
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
    within, line = read_delay_line(result.read_delay)
    console.print(line if within else f"[yellow]warning:[/yellow] {line}", highlight=False)
    sys.stdout.flush()
