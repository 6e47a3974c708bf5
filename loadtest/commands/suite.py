"""`loadtest suite run | list | compare`: options, printing and exit codes."""

import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from loadtest.drive.progress import default_progress
from loadtest.environments.catalog import EnvironmentsError
from loadtest.environments.launcher import LaunchError
from loadtest.suite.model import SuiteError
from loadtest.suite.runner import RunOptions, SuiteRun, run_suite
from loadtest.suite.spec import builtin_suites, load_suite
from loadtest.workload.model import WorkloadError
from turnout.logs import configure_logging

suite_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Benchmark suites: sweeps over workload fields, saturation searches, GPU telemetry.",
)


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 120)


def _fail(console: Console, message: str, code: int = 2) -> None:
    console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _terminate_as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@suite_app.command("list")
def list_command() -> None:
    """The built-in suites, one line each."""
    entries = builtin_suites()
    width = max(len(name) for name in entries)
    for name, description in entries.items():
        typer.echo(f"{name:<{width}}  {description}")


@suite_app.command("run")
def run_command(
    suite: Annotated[
        str, typer.Argument(help="A suite YAML file (native or testbench) or a built-in name.")
    ],
    target: Annotated[
        list[str] | None,
        typer.Option(help="URL or environment to run against instead of the suite's (repeatable)."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Directory for results.")] = Path("results"),
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Carry on the newest unfinished run of this suite under --out."
        ),
    ] = False,
    time_scale: Annotated[
        float | None,
        typer.Option(help="Slow-down of local simulated fleets (overrides the suite's)."),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show live progress of each point.")] = True,
    api_key: Annotated[
        str | None, typer.Option(envvar="LOADTEST_API_KEY", help="Bearer token for the targets.")
    ] = None,
) -> None:
    """Run SUITE: each target's points in order, with warm-up, cool-down and stop conditions;
    write results/suite-<name>-<time>/ (suite.csv, suite.json, report.html, every point)."""
    configure_logging("warning")
    console = _console()

    def say(text: str) -> None:
        console.print(text, highlight=False, soft_wrap=True, markup=False)

    if time_scale is not None and time_scale <= 0:
        _fail(console, f"--time-scale must be positive, got {time_scale:g}")
    try:
        loaded = load_suite(suite)
    except SuiteError as exc:
        _fail(console, str(exc))
        return
    options = RunOptions(
        out=out,
        resume=resume,
        targets=tuple(target or ()),
        api_key=api_key,
        time_scale=time_scale,
    )
    previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        result = run_suite(
            loaded, options, say=say, progress=default_progress if progress else lambda: None
        )
    except (SuiteError, EnvironmentsError, WorkloadError) as exc:
        _fail(console, str(exc))
        return
    except LaunchError as exc:
        _fail(
            console, f"an environment did not start: {exc} (every process it started is stopped)", 1
        )
        return
    except KeyboardInterrupt:
        say(
            "interrupted: finished points are kept and any fleet started is stopped; "
            f"carry on with: loadtest suite run {suite} --resume"
            + (f" --out {out}" if out != Path("results") else "")
        )
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    _print(console, result)


def _print(console: Console, run: SuiteRun) -> None:
    table = Table(title=f"suite {run.suite.name} (hardware time)")
    for column in (
        "target",
        "point",
        "out tok/s",
        "req/s done",
        "TTFT p50",
        "TTFT p99",
        "ITL p99",
        "",
    ):
        table.add_column(column, justify="left" if column in ("target", "point", "") else "right")
    for target in run.targets:
        for outcome in target.outcomes:
            f = outcome.result.figures

            def ms(key: str, f: dict[str, object] = f) -> str:
                value = f.get(key)
                return "-" if not isinstance(value, float) else f"{value * 1000:.0f} ms"

            done = f.get("completion_rps") or f.get("throughput_rps")
            table.add_row(
                target.env.name,
                outcome.point.label(),
                f"{f.get('output_tokens_per_s') or 0:.0f}",
                "-" if not isinstance(done, float) else f"{done:.3g}",
                ms("ttft_p50_s"),
                ms("ttft_p99_s"),
                ms("itl_p99_s"),
                "[red]saturation[/red]"
                if outcome.failed and not target.answers
                else (outcome.failed or ""),
            )
    console.print(table)
    console.print(f"results written to {run.directory}", highlight=False, soft_wrap=True)
    if run.report is not None:
        console.print(f"report: {run.report}", highlight=False, soft_wrap=True)


@suite_app.command("compare")
def compare_command(
    a: Annotated[Path, typer.Argument(help="Results directory of suite A.")],
    b: Annotated[Path, typer.Argument(help="Results directory of suite B.")],
    out: Annotated[Path, typer.Option(help="Directory for the comparison.")] = Path("results"),
) -> None:
    """Overlay two suites' results: curves on the same axes, points side by side."""
    from loadtest.suite.compare import COMPARED, compare_suites, ratio

    console = _console()
    try:
        result = compare_suites(a, b, out)
    except SuiteError as exc:
        _fail(console, str(exc))
        return
    table = Table(title=f"A = {result.a['suite']}, B = {result.b['suite']}: B / A")
    table.add_column("point", no_wrap=True)
    for name in COMPARED.values():
        table.add_column(name, justify="right")
    for label, row_a, row_b in result.matched:
        cells = [ratio(row_a, row_b, key) for key in COMPARED]
        table.add_row(label, *("-" if c is None else f"{c:.2f}" for c in cells))
    console.print(table)
    console.print(f"report: {result.directory / 'report.html'}", highlight=False, soft_wrap=True)
