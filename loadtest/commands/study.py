"""The `loadtest study` command: every strategy against the oracle, over load, virtual time."""

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from loadtest.study.fleet import DEFAULT_PROFILE, ORACLE, StudyError, strategy_specs, study_fleet
from loadtest.study.report import RISING_NOTE, write_study
from loadtest.study.run import Study, run_study
from loadtest.workload.format import load_workload
from loadtest.workload.model import WorkloadError
from routers.registry import available
from turnout.logs import configure_logging

DEFAULT_LOADS = "0.5,0.85,0.95"
DEFAULT_REQUESTS = 20_000


def parse_loads(text: str) -> tuple[float, ...]:
    """'0.5,0.85' -> (0.5, 0.85); StudyError naming the option otherwise."""
    try:
        loads = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise StudyError(f"--loads: {text!r} is not a list of numbers like 0.5,0.85") from None
    if not loads or any(not 0 < load <= 2 for load in loads):
        raise StudyError(f"--loads: {text!r}: give loads above 0 and at most 2, e.g. 0.5,0.85")
    return tuple(sorted(set(loads)))


def print_study(console: Console, study: Study) -> None:
    for load in study.loads:
        oracle = study.oracle(load)
        best = study.best(load)
        rate = next(r.rate for r in study.rows if r.load == load)
        table = Table(title=f"load {load:.2f} ({rate:.1f} req/s), virtual time")
        for column in ("strategy", "TTFT p50", "TTFT p99", "vs oracle", "TPOT p50", "TPOT p99"):
            table.add_column(column, justify="left" if column == "strategy" else "right")
        table.add_column("goodput", justify="right")
        for row in (r for r in study.rows if r.load == load):
            f = row.figures
            gap = row.gap(oracle)
            name = f"[bold]{row.strategy}[/]" if row is best else row.strategy
            table.add_row(
                name,
                _ms(f["ttft_p50_s"]),
                _ms(f["ttft_p99_s"]),
                "" if gap is None else f"{gap:+.1%}",
                _ms(f["tpot_p50_s"]),
                _ms(f["tpot_p99_s"]),
                f"{f['goodput_rps'] or 0.0:.2f} req/s",
            )
        console.print(table)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1e3:,.0f} ms"


def study_command(
    workload: Annotated[
        str, typer.Option(help="A built-in workload name or a YAML file.")
    ] = "chat-mixed",
    replicas: Annotated[
        int | None,
        typer.Option(help="N copies of --profile (2 to 500); default: the reference fleet."),
    ] = None,
    profile: Annotated[str, typer.Option(help="The profile copied by --replicas.")] = (
        DEFAULT_PROFILE
    ),
    fleet: Annotated[
        str, typer.Option(help="How replicas are deployed: baseline, managed, managed-prefix.")
    ] = "baseline",
    strategies: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated, each name[:key=value;...]; default: every registered one."
        ),
    ] = None,
    loads: Annotated[
        str, typer.Option(help="Shares of the fleet's saturation rate (found and printed).")
    ] = DEFAULT_LOADS,
    requests: Annotated[
        int, typer.Option(min=100, help="Requests per strategy and load.")
    ] = DEFAULT_REQUESTS,
    seed: Annotated[int, typer.Option(help="Seed of the schedules and strategies.")] = 1,
    poll_interval: Annotated[
        float, typer.Option(min=0.001, help="Seconds between the gateway's metrics scrapes.")
    ] = 1.0,
    out: Annotated[Path, typer.Option(help="Directory for results.")] = Path("results/study"),
) -> None:
    """Every strategy and an oracle (routing on the engines' true state) at each load, in
    virtual time: TTFT and TPOT p50/p99, goodput, each strategy's gap to the oracle."""
    configure_logging("warning")
    console = Console(width=None if sys.stdout.isatty() else 120)

    def say(text: str) -> None:
        console.print(text, highlight=False, soft_wrap=True)

    try:
        chosen_fleet = study_fleet(replicas, profile, fleet)
        specs = strategy_specs(strategies or ",".join(available()))
        chosen_loads = parse_loads(loads)
        chosen = load_workload(workload)
    except (StudyError, WorkloadError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    study = run_study(
        chosen_fleet,
        chosen,
        [s for s in specs if s != ORACLE],
        chosen_loads,
        seed=seed,
        requests=requests,
        poll_interval=poll_interval,
        announce=say,
    )
    print_study(console, study)
    for load in study.loads:
        best = study.best(load)
        if best is not None:
            gap = best.gap(study.oracle(load))
            gap_text = "" if gap is None else f", {gap:+.1%} vs the oracle"
            say(f"load {load:.2f}: best shipped strategy {best.strategy}{gap_text} (TTFT p99)")
        if study.rising(load):
            say(f"load {load:.2f}: {RISING_NOTE}")
    path = write_study(study, out)
    say(f"results written to {out} (report.html, study.json, study.csv); report: {path}")
