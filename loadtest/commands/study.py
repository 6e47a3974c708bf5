"""The `loadtest study` command: every strategy against the oracle, over load, virtual time."""

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from loadtest.study.fleet import DEFAULT_PROFILE, ORACLE, StudyError, strategy_specs, study_fleet
from loadtest.study.report import RISING_NOTE, write_study
from loadtest.study.run import Study, run_study
from loadtest.study.seeds import Gaps, best_on_average, bests, gaps, parse_seeds
from loadtest.study.seeds import document as seeds_document
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
    seeds: Annotated[
        str | None,
        typer.Option(
            help="Repeat the study over these seeds (1-5 or 1,3,7) and sum up the gaps "
            "to the oracle across them; replaces --seed."
        ),
    ] = None,
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
        chosen_seeds = parse_seeds(seeds) if seeds is not None else (seed,)
    except (StudyError, WorkloadError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    studies = []
    for each in chosen_seeds:
        if seeds is not None:
            say(f"== seed {each}")
        study = run_study(
            chosen_fleet,
            chosen,
            [s for s in specs if s != ORACLE],
            chosen_loads,
            seed=each,
            requests=requests,
            poll_interval=poll_interval,
            announce=say,
        )
        studies.append(study)
        if seeds is None:
            print_study(console, study)
        _say_best(say, study)
        where = out if seeds is None else out / f"seed-{each}"
        path = write_study(study, where)
        say(f"results written to {where} (report.html, study.json, study.csv); report: {path}")
    if seeds is not None:
        print_seeds(console, studies)
        (out / "seeds.json").write_bytes(
            orjson.dumps(seeds_document(studies), option=orjson.OPT_INDENT_2)
        )
        say(f"across seeds: {out / 'seeds.json'}")


def _say_best(say: Callable[[str], None], study: Study) -> None:
    for load in study.loads:
        best = study.best(load)
        if best is not None:
            gap = best.gap(study.oracle(load))
            gap_text = "" if gap is None else f", {gap:+.1%} vs the oracle"
            say(f"load {load:.2f}: best shipped strategy {best.strategy}{gap_text} (TTFT p99)")
        if study.rising(load):
            say(f"load {load:.2f}: {RISING_NOTE}")


def print_seeds(console: Console, studies: Sequence[Study]) -> None:
    """Each strategy's gap to the oracle across the seeds, a table per load."""
    listed = ", ".join(str(s.seed) for s in studies)
    by_load = {b.load: b for b in bests(studies)}
    found = gaps(studies)
    for load in studies[0].loads:
        table = Table(title=f"load {load:.2f}: TTFT p99 vs the oracle over seeds {listed}")
        for column in ("strategy", "mean", "95% interval", "worst", "worst where sustained"):
            table.add_column(column, justify="left" if column == "strategy" else "right")
        for g in (g for g in found if g.load == load):
            table.add_row(
                g.strategy, _pct(g.mean), _interval(g), _pct(g.worst), _pct(g.worst_sustained)
            )
        console.print(table)
        average = best_on_average(found, load)
        if average is not None:
            text = f"load {load:.2f}: best shipped strategy on average {average.strategy}, "
            text += f"{_pct(average.mean)} vs the oracle"
            if average.half_width is not None:
                text += f" (95% interval {_interval(average)})"
            console.print(text, highlight=False, soft_wrap=True)
        best = by_load[load]
        text = f"load {load:.2f}: each run's best shipped strategy, at worst: "
        text += f"{_pct(best.worst_sustained)} where the fleet keeps up"
        if best.rising:
            seeds = ", ".join(str(seed) for seed in sorted(best.rising))
            text += f"; the oracle still rising on seed(s) {seeds}: past what the fleet sustains"
        console.print(text, highlight=False, soft_wrap=True)


def _interval(g: Gaps) -> str:
    """The 95% interval of a mean gap, "-" below two seeds."""
    if g.mean is None or g.half_width is None:
        return "-"
    return f"{g.mean - g.half_width:+.1%} to {g.mean + g.half_width:+.1%}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1%}"
