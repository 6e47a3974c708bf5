"""The `loadtest compare A B` command: options, the side-by-side table, the verdict."""

import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated

import numpy as np
import orjson
import typer
from rich.console import Console
from rich.table import Table

from loadtest.commands.run import TOKENIZER_HELP
from loadtest.compare.live import CompareOptions, Comparison, compare, units
from loadtest.drive.progress import default_progress
from loadtest.environments.catalog import EnvironmentsError
from loadtest.environments.launcher import LaunchError
from loadtest.workload import WorkloadError
from loadtest.workload.counting import TokenizerError
from turnout.logs import configure_logging

# Defaults for `loadtest compare baseline managed` on a 2-core machine (docs/compare.md): the
# simulated fleet plays TIME_SCALE times slower than real hardware, so 25 req/s of wall time keep
# as many requests in flight as 50 req/s would on real GPUs (~120 streams). More streams make the
# generator's own event loop late (40 req/s: lag p99 6-9 ms here); the longest chat-mixed request
# (1,024 tokens) still ends ~20 s after the last arrival: each side takes about a minute.
TIME_SCALE = 2.0
RATE: float | None = 25.0
DURATION = 30.0


def _fmt(value: float | None, unit: str, *, signed: bool = False) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    sign = "+" if signed else ""
    if unit == "s":
        return f"{value * 1000:{sign}.1f} ms"
    if unit == "":
        return f"{value * 100:{sign}.2f}%"
    return f"{value:{sign}.2f} {unit}"


def print_comparison(console: Console, result: Comparison) -> None:
    a, b = result.a.env.name, result.b.env.name
    table = Table(title=f"A = {a}   B = {b}   (B - A with bootstrap 95% CI)")
    for column in ("figure", f"A {a}", f"B {b}", "B - A", "95% CI", ""):
        table.add_column(column, justify="left" if column in ("figure", "") else "right")
    unit_of = units()
    for d in result.differences:
        unit = unit_of[d.figure]
        ci = f"{_fmt(d.low, unit, signed=True)} .. {_fmt(d.high, unit, signed=True)}"
        mark = {"a": f"[cyan]{a} better[/]", "b": f"[magenta]{b} better[/]", None: "[dim]n.s.[/]"}
        table.add_row(
            d.figure,
            _fmt(d.a, unit),
            _fmt(d.b, unit),
            _fmt(d.diff, unit, signed=True),
            ci,
            mark[d.winner],
        )
    lag_a, lag_b = result.a.summary.lag.p99, result.b.summary.lag.p99
    table.add_row("generator lag p99", _fmt(lag_a, "s"), _fmt(lag_b, "s"), "", "", "")
    console.print(table)
    for reason in result.reasons:
        console.print(f"  - {reason}", highlight=False, soft_wrap=True)
    console.print(f"[bold]verdict:[/bold] {result.verdict}", highlight=False, soft_wrap=True)
    console.print(f"results written to {result.directory}", highlight=False, soft_wrap=True)


def _terminate_as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def compare_command(
    a: Annotated[str, typer.Argument(help="Environment A (a name from the environments file).")],
    b: Annotated[str, typer.Argument(help="Environment B.")],
    workload: Annotated[
        str, typer.Option(help="A built-in workload name or a YAML file.")
    ] = "chat-mixed",
    rate: Annotated[float | None, typer.Option(help="Requests per second (open loop).")] = RATE,
    concurrency: Annotated[
        int | None, typer.Option(help="Requests kept in flight (closed loop) instead of a rate.")
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="Seconds of arrivals per side.")
    ] = DURATION,
    requests: Annotated[
        int | None, typer.Option(help="Number of requests per side (instead of a duration).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed; default: the workload's.")] = None,
    time_scale: Annotated[
        float,
        typer.Option(help="Slow-down of local simulated fleets (environments may set their own)."),
    ] = TIME_SCALE,
    environments: Annotated[
        Path | None,
        typer.Option(help="Environments YAML (default: ./turnout-environments.yaml if any)."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Directory for results.")] = Path("results"),
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples.")] = 1000,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print compare.json to stdout instead of the table.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show live progress.")] = True,
    api_key: Annotated[
        str | None, typer.Option(envvar="LOADTEST_API_KEY", help="Bearer token for URL targets.")
    ] = None,
    tokenizer: Annotated[
        list[str] | None,
        typer.Option(help=TOKENIZER_HELP + " Default: what the environments name."),
    ] = None,
) -> None:
    """Run one seeded schedule against environments A and B and compare them."""
    configure_logging("warning")
    console = Console(stderr=json_output, width=None if sys.stdout.isatty() else 120)
    options = CompareOptions(
        workload=workload,
        rate=rate,
        concurrency=concurrency,
        duration=None if requests is not None else duration,
        requests=requests,
        seed=seed,
        time_scale=time_scale,
        environments_file=environments,
        out=out,
        resamples=resamples,
        api_key=api_key,
        tokenizer=tuple(tokenizer or ()),
    )
    previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        result = compare(
            a,
            b,
            options,
            progress=default_progress() if progress else None,
            announce=lambda text: console.print(text, highlight=False, soft_wrap=True),
        )
    except (EnvironmentsError, WorkloadError, TokenizerError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except LaunchError as exc:
        console.print(
            f"[red]error: an environment did not start:[/red] {exc}",
            highlight=False,
            soft_wrap=True,
        )
        console.print("every process it started has been stopped", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        console.print(
            "interrupted: every environment started has been stopped",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    if json_output:
        sys.stdout.write(orjson.dumps(result.document, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print_comparison(console, result)
