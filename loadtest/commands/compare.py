"""The `loadtest compare A B` command: options, the tables, the verdict."""

import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Annotated

import numpy as np
import orjson
import typer
from rich.console import Console
from rich.table import Table

from loadtest.analysis.stats import Difference, figures
from loadtest.commands.run import TOKENIZER_HELP
from loadtest.compare.explain import (
    EXPLAINED,
    UNITS,
    Attribution,
    consistency,
    interval,
    number,
)
from loadtest.compare.options import (
    POINT_REQUESTS,
    REPEATS,
    SWEEP_REQUESTS,
    TIME_SCALE,
    CompareOptions,
    Mode,
    Sweep,
)
from loadtest.compare.session import Comparison, compare
from loadtest.compare.sweep import LABELS, curves, ranges
from loadtest.drive.progress import default_progress
from loadtest.environments.catalog import EnvironmentsError
from loadtest.environments.launcher import LaunchError
from loadtest.workload.counting import TokenizerError
from loadtest.workload.model import WorkloadError
from turnout.logs import configure_logging


def _fmt(value: float | None, unit: str, *, signed: bool = False) -> str:
    if value is not None and np.isinf(value):
        return ("+" if signed and value > 0 else "") + ("inf" if value > 0 else "-inf")
    if value is None or not np.isfinite(value):
        return "-"
    sign = "+" if signed else ""
    if unit == "s":
        return f"{value * 1000:{sign}.1f} ms"
    if unit == "":
        return f"{value * 100:{sign}.2f}%"
    return f"{value:{sign}.2f} {unit}"


def _differences(console: Console, title: str, diffs: Sequence[Difference], a: str, b: str) -> None:
    table = Table(title=title)
    for column in ("figure", f"A {a}", f"B {b}", "B - A", "95% CI", ""):
        table.add_column(column, justify="left" if column in ("figure", "") else "right")
    unit_of = {f.name: f.unit for f in figures()}
    mark = {"a": f"[cyan]{a} better[/]", "b": f"[magenta]{b} better[/]", None: "[dim]-[/]"}
    for d in diffs:
        unit = unit_of[d.figure]
        ci = f"{_fmt(d.low, unit, signed=True)} .. {_fmt(d.high, unit, signed=True)}"
        note = f" [yellow](rests on {d.tail} beyond it)[/]" if d.imprecise else ""
        table.add_row(
            d.figure,
            _fmt(d.a, unit),
            _fmt(d.b, unit),
            _fmt(d.diff, unit, signed=True),
            ci,
            mark[d.winner] + note,
        )
    console.print(table)


def print_comparison(console: Console, result: Comparison) -> None:
    a, b = result.a.name, result.b.name

    def say(text: str) -> None:
        console.print(text, highlight=False, soft_wrap=True)

    if result.sweep:
        found = curves(result.sweep)
        table = Table(title=f"B - A over load, virtual time (A = {a}, B = {b})")
        table.add_column("load", justify="right")
        table.add_column("req/s", justify="right")
        for curve in found:
            table.add_column(LABELS[curve.figure], justify="right")
        colour = {"a": "cyan", "b": "magenta", None: "dim"}
        for point in result.sweep:
            cells = []
            for curve in found:
                d = point.judged.by_name(curve.figure)
                rel = d.relative
                text = f"{rel:+.0%}" if rel is not None and np.isfinite(rel) else "-"
                cells.append(f"[{colour[d.winner]}]{text}[/]")
            table.add_row(f"{point.load:.2f}", f"{point.rate:.1f}", *cells)
        console.print(table)
        say("cyan: A better, magenta: B better, dim: no difference beyond noise and 5%")
        for curve in found:
            say(f"  {ranges(curve, a, b)}")
        for line in result.past_sustained():
            say(f"  [yellow]{line}[/]")
    if result.point is not None:
        point = result.point
        title = f"virtual time, {point.describe()} ({point.rate:.1f} req/s): B - A, 95% CI"
        _differences(console, title, point.judged.differences, a, b)
        for note in point.judged.observations:
            say(f"  - {note}")
    if result.live is not None:
        live = result.live
        at = f"load {live.load:.2f}" if live.load is not None else "the rate given"
        title = f"live at {at}, {live.judged.runs} run(s) a side: B - A, 95% CI"
        _differences(console, title, live.judged.differences, a, b)
        for note in live.judged.observations:
            say(f"  - {note}")
        if live.agreement is not None:
            say(f"  - {live.agreement.describe()}")
    if result.explain is not None:
        _attribution(console, result.explain, a, b)
    for part in result.verdict.split(" || "):
        say(f"[bold]verdict:[/bold] {part}")
    say(f"results written to {result.directory} (report.html, compare.json)")


def _attribution(console: Console, found: Attribution | str, a: str, b: str) -> None:
    """Each step's contribution to the explained figures, then the sum against A -> B."""
    if isinstance(found, str):
        console.print(f"[bold]explain:[/bold] {found}", highlight=False, soft_wrap=True)
        return
    colour = {"a": "red", "b": "green", None: "dim"}  # the change made it worse / better
    table = Table(
        title=f"why, one change at a time (virtual time, load {found.load:.2f}, "
        f"{found.requests} requests): each step's B - A [95% CI]"
    )
    table.add_column("", no_wrap=True)
    table.add_column("change", no_wrap=True)
    for figure in EXPLAINED:
        table.add_column(f"{LABELS[figure]} ({UNITS[figure]})", justify="right", no_wrap=True)

    def values(k: int) -> list[str]:
        return [number(found.values[k][f], f) for f in EXPLAINED]

    def cell(d: Difference) -> str:
        return f"[{colour[d.winner]}]{interval(d)}[/]"

    table.add_row(f"A {a}", "", *values(0))
    for k, step in enumerate(found.steps, start=1):
        row = [cell(step.differences[f]) for f in EXPLAINED]
        table.add_row(f"{k}. {step.after}", step.change, *row)
    table.add_row(f"B {b}", "", *values(-1))
    sums = [number(found.sum_of_steps(f), f, signed=True) for f in EXPLAINED]
    table.add_row("sum of the steps", "", *sums)
    table.add_row("A -> B, compared", "", *(cell(found.total[f]) for f in EXPLAINED))
    console.print(table)
    console.print(
        f"  green: the change made that figure better, red: worse, dim: no difference beyond "
        f"noise and {int(found.total[EXPLAINED[0]].min_effect * 100)}%; {consistency(found)}",
        highlight=False,
        soft_wrap=True,
    )


def _terminate_as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def compare_command(
    a: Annotated[str, typer.Argument(help="Environment A (a name from the environments file).")],
    b: Annotated[str, typer.Argument(help="Environment B.")],
    workload: Annotated[
        str, typer.Option(help="A built-in workload name or a YAML file.")
    ] = "chat-mixed",
    virtual: Annotated[
        bool, typer.Option("--virtual", help="Virtual time only (local fleets; any load).")
    ] = False,
    live: Annotated[bool, typer.Option("--live", help="Live runs only.")] = False,
    load: Annotated[
        float | None,
        typer.Option(help="Offered load as a share of A's saturation rate (found and printed)."),
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(help="Requests per second (live: wall time; virtual: hardware time)."),
    ] = None,
    sweep: Annotated[
        str | None,
        typer.Option(help="Virtual loads LOW:HIGH:POINTS, e.g. 0.3:0.95:8 (the default)."),
    ] = None,
    repeats: Annotated[
        int, typer.Option(min=1, help="Live runs of each side, in A B B A order.")
    ] = REPEATS,
    concurrency: Annotated[
        int | None,
        typer.Option(help="Requests kept in flight (closed loop), live and in virtual time."),
    ] = None,
    duration: Annotated[float | None, typer.Option(help="Seconds of arrivals per run.")] = None,
    requests: Annotated[int | None, typer.Option(help="Requests per run.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed; default: the workload's.")] = None,
    time_scale: Annotated[
        float,
        typer.Option(
            help="Slow-down of local simulated fleets, live (environments may set their own)."
        ),
    ] = TIME_SCALE,
    min_effect: Annotated[
        float, typer.Option(help="Smallest relative difference called better.")
    ] = 0.05,
    virtual_requests: Annotated[
        int | None,
        typer.Option(
            min=100,
            help=f"Requests per virtual load (default {SWEEP_REQUESTS:,} in a sweep, "
            f"{POINT_REQUESTS:,} for one load).",
        ),
    ] = None,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help="Attribute B - A to one change at a time (prefix caching, KV mode, routing, "
            "...), in virtual time at --load (default 0.8).",
        ),
    ] = False,
    environments: Annotated[
        Path | None,
        typer.Option(help="Environments YAML (default: ./turnout-environments.yaml if any)."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Directory for results.")] = Path("results"),
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples.")] = 1000,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print compare.json to stdout instead of the tables.")
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
    """Compare environments A and B on one seeded schedule.

    By default (both local fleets): a sweep of loads in virtual time, then a live check at a
    load this machine can play. --virtual or --live picks one clock.
    """
    configure_logging("warning")
    # Off a terminal (logs, CI) wide enough for the --explain table without folding.
    console = Console(stderr=json_output, width=None if sys.stdout.isatty() else 150)

    def fail(message: str) -> None:
        console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)

    if virtual and live:
        fail("give --virtual or --live, not both (neither: both clocks)")
    if explain and live:
        fail("--explain plays the chain in virtual time: drop --live")
    if load is not None and rate is not None:
        fail("give --load or --rate, not both")
    mode: Mode = "virtual" if virtual else "live" if live else "auto"
    try:
        swept = Sweep.parse(sweep) if sweep is not None else None
    except ValueError as exc:
        fail(str(exc))
        return
    options = CompareOptions(
        workload=workload,
        mode=mode,
        rate=rate,
        load=load,
        sweep=swept,
        concurrency=concurrency,
        duration=None if requests is not None else duration,
        requests=requests,
        seed=seed,
        repeats=repeats,
        time_scale=time_scale,
        environments_file=environments,
        out=out,
        resamples=resamples,
        api_key=api_key,
        min_effect=min_effect,
        virtual_requests=virtual_requests,
        tokenizer=tuple(tokenizer or ()),
        explain=explain,
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
        fail(str(exc))
        return
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
