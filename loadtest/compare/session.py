"""`loadtest compare A B`: what to run, in which clock, and the answer.

- Virtual time (both environments local fleets): each fleet's saturation rate for the
  workload, then either a sweep of loads (the default) or one load, each point the same
  seeded schedule played through both fleets with their real strategies.
- Live: the schedule against the running environments (local fleets started and stopped
  for every run), A B B A, at a load this machine can play; when virtual time ran too, the
  same schedule is played virtually at that load and the two are checked to agree in sign.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadtest.analysis.checks import prompt_length_warnings
from loadtest.analysis.results import new_dir
from loadtest.analysis.rise import Rise
from loadtest.analysis.stats import figures
from loadtest.analysis.summary import summarize, to_hardware
from loadtest.compare.agreement import Agreement, agreement
from loadtest.compare.explain import Attribution, as_document, attribute
from loadtest.compare.judge import Judged, judge, measured, schedule_window
from loadtest.compare.live import SideRun, as_runs, judged_workload, run_repeats, write_json
from loadtest.compare.options import (
    LIVE_DURATION_S,
    LIVE_LOAD,
    LIVE_WALL_RATE,
    URL_DURATION_S,
    URL_RATE,
    CompareOptions,
    Sweep,
)
from loadtest.compare.sweep import curves, past_sustained, sweep_verdict
from loadtest.compare.virtual import (
    VirtualPoint,
    at_load,
    capacities,
    compare_at,
    virtual_schedule,
)
from loadtest.drive.progress import ProgressSink
from loadtest.environments.catalog import (
    Environment,
    EnvironmentsError,
    as_dict,
    common_tokenizer,
    load_environments,
    resolve,
)
from loadtest.environments.identity import tokenizer_warnings
from loadtest.playback.capacity import Capacity
from loadtest.playback.fleets import LiveOnly, VirtualFleet, virtual_fleet
from loadtest.sweep.engine import run_sweep
from loadtest.sweep.plans import GridPlan
from loadtest.sweep.points import Axis, grid
from loadtest.workload.counting import TokenizerChoice, load_tokenizers
from loadtest.workload.format import load_workload
from loadtest.workload.model import Workload
from loadtest.workload.schedule import Schedule, build_schedule

Say = Callable[[str], None]


@dataclass
class Live:
    """The live part: runs of both sides, judged, and its virtual twin."""

    schedule: Schedule
    time_scale: float
    # Share of A's saturation rate the live schedule offers (None: unknown, URL targets).
    load: float | None
    runs_a: list[SideRun]
    runs_b: list[SideRun]
    judged: Judged
    twin: VirtualPoint | None = None
    agreement: Agreement | None = None


@dataclass
class Comparison:
    a: Environment
    b: Environment
    workload: Workload
    directory: Path
    verdict: str
    better: str | None
    capacity: tuple[Capacity, Capacity] | None = None
    sweep: list[VirtualPoint] = field(default_factory=list)
    point: VirtualPoint | None = None
    live: Live | None = None
    # --explain: the attribution along the chain from A to B, or why there is none.
    explain: Attribution | str | None = None
    document: dict[str, Any] = field(default_factory=dict)

    def past_sustained(self) -> list[str]:
        """The sweep's lines on loads past what a side sustains (`sweep.past_sustained`)."""
        rates = None if self.capacity is None else (self.capacity[0].rate, self.capacity[1].rate)
        return past_sustained(self.sweep, self.a.name, self.b.name, rates)


def compare(
    a_name: str,
    b_name: str,
    options: CompareOptions,
    *,
    progress: ProgressSink | None = None,
    announce: Say | None = None,
) -> Comparison:
    """The whole comparison; writes compare.json and report.html under options.out."""
    t0 = time.monotonic()
    say = announce or (lambda _text: None)
    envs = load_environments(options.environments_file)
    a = resolve(envs, a_name).with_time_scale(options.time_scale)
    b = resolve(envs, b_name).with_time_scale(options.time_scale)
    workload = load_workload(options.workload)
    seed = workload.seed if options.seed is None else options.seed
    local = a.is_local and b.is_local
    if options.mode == "virtual" and not local:
        virtual_fleet(a if not a.is_local else b)  # raises, saying which environment and why
    needs_fleets = local and (options.mode != "live" or options.load is not None)
    fleets = None
    if needs_fleets:
        try:
            fleets = (virtual_fleet(a), virtual_fleet(b))
        except LiveOnly as exc:  # a wrong environment is refused, whatever the mode
            if options.mode != "auto":
                raise
            say(f"virtual time: not possible here ({exc}); live only")
    result = Comparison(a, b, workload, _results_dir(options.out, a_name, b_name), "", None)
    if fleets is not None and options.mode != "live":
        _virtual(result, fleets, options, seed, say)
    elif fleets is not None and options.load is not None:
        result.capacity = capacities(fleets, workload, seed=seed)
    if options.explain:
        result.explain = attribute(
            a,
            b,
            envs,
            workload,
            options,
            seed=seed,
            capacity=result.capacity,
            point=result.point,
            say=say,
        )
    if options.mode != "virtual":
        _live(result, fleets, options, seed, say, progress)
    result.verdict, result.better = _headline(result)
    result.document = _document(result, options, seed, time.monotonic() - t0)
    write_json(result.directory / "compare.json", result.document)
    # matplotlib takes seconds to import: only when a report is drawn.
    from loadtest.compare.report import write_compare_report

    write_compare_report(result, result.directory / "report.html")
    return result


def _virtual(
    result: Comparison,
    fleets: tuple[VirtualFleet, VirtualFleet],
    options: CompareOptions,
    seed: int,
    say: Say,
) -> None:
    workload = result.workload
    say("virtual time: finding each fleet's saturation rate for this workload")
    result.capacity = cap_a, cap_b = capacities(fleets, workload, seed=seed)
    say(f"  A {result.a.name}: {cap_a.describe()}")
    say(f"  B {result.b.name}: {cap_b.describe()}")
    if options.concurrency is not None and options.sweep is None:
        say(f"virtual time: both with {options.concurrency} requests in flight (closed loop)")
        schedule = virtual_schedule(workload, options, seed, None, options.concurrency)
        result.point = compare_at(
            fleets, workload, schedule, 0.0, options, keep_samples=True, unit=cap_a.rate
        )
        say(f"  A sustains {result.point.rate:.2f} req/s = load {result.point.load:.2f}")
        return
    single = options.load is not None or options.rate is not None
    if single and options.sweep is None:
        load = options.load if options.load is not None else (options.rate or 0.0) / cap_a.rate
        say(f"virtual time: both at load {load:.2f} ({load * cap_a.rate:.1f} req/s)")
        schedule = virtual_schedule(workload, options, seed, load * cap_a.rate)
        result.point = compare_at(fleets, workload, schedule, load, options, keep_samples=True)
        return
    sweep = options.sweep or Sweep()
    say(f"virtual time: both fleets at loads {', '.join(f'{x:.2f}' for x in sweep.loads())}")
    plan = GridPlan(grid([Axis("load", tuple(sweep.loads()))]))
    outcomes = run_sweep(
        plan, lambda point: at_load(fleets, workload, cap_a, point["load"], options, seed=seed)
    )
    result.sweep = [outcome.result for outcome in outcomes]


def _live(
    result: Comparison,
    fleets: tuple[VirtualFleet, VirtualFleet] | None,
    options: CompareOptions,
    seed: int,
    say: Say,
    progress: ProgressSink | None,
) -> None:
    a, b, workload = result.a, result.b, result.workload
    models = [name for name, _ in workload.models]
    choice = common_tokenizer(TokenizerChoice.parse(options.tokenizer), a, b, models)
    for line in tokenizer_warnings(a, b, choice):
        say(line)
    tokenizers = load_tokenizers(choice)
    scales = {env.time_scale or 1.0 for env in (a, b) if env.is_local} or {1.0}
    scale = max(scales)
    unit = result.capacity[0].rate if result.capacity else None
    rate, load = _live_rate(options, unit, scale)
    duration = options.duration
    if duration is None and options.requests is None:
        duration = LIVE_DURATION_S if unit is not None else URL_DURATION_S
    schedule = build_schedule(
        workload.stretched(scale),  # phases last as long as the fleet's slowed requests
        seed=seed,
        rate=None if options.concurrency else rate,
        concurrency=options.concurrency,
        duration=duration,
        requests=options.requests if duration is None else None,
        tokenizers=tokenizers,
    )
    where = f" = load {load:.2f} of A's saturation rate" if load is not None else ""
    say(
        f"live: {workload.name}: {schedule.describe()}{where}, time scale {scale:g}, "
        f"{options.repeats} run(s) a side, seed {schedule.seed}"
    )
    runs_a, runs_b = run_repeats(
        (a, b), workload, schedule, result.directory, options, progress=progress, say=say
    )
    judged_as = judged_workload(workload, a, b)
    fallback = sum(r.summary.window_s for r in runs_a + runs_b) / len(runs_a + runs_b)
    window = schedule_window(measured(runs_a[0].result.records, judged_as), fallback)
    window_b = None
    if schedule.closed_loop:  # each side sends at its own pace: each its own mean window
        window = sum(r.summary.window_s for r in runs_a) / len(runs_a)
        window_b = sum(r.summary.window_s for r in runs_b) / len(runs_b)
    judged = judge(
        as_runs(a.name, runs_a),
        as_runs(b.name, runs_b),
        judged_as,
        window_s=window,
        resamples=options.resamples,
        seed=schedule.seed,
        min_effect=options.min_effect,
        window_b_s=window_b,
    )
    notes = _prompt_notes(schedule, runs_a, runs_b, a, b)
    judged = replace(judged, observations=judged.observations + notes)
    result.live = Live(schedule, scale, load, runs_a, runs_b, judged)
    if fleets is not None and load is not None and not schedule.closed_loop:
        say("virtual time: the live schedule, at the hardware's speed, to check agreement")
        twin_schedule = build_schedule(
            workload,
            seed=schedule.seed,
            rate=rate * scale,
            duration=None if duration is None else duration / scale,
            requests=None if duration is not None else options.requests,
            tokenizers=tokenizers,
        )
        twin = compare_at(fleets, workload, twin_schedule, load, options)
        result.live.twin = twin
        result.live.agreement = agreement(twin.judged, judged)


def _prompt_notes(
    schedule: Schedule, runs_a: list[SideRun], runs_b: list[SideRun], a: Environment, b: Environment
) -> list[str]:
    """What prompts were sized with, and a line per side and model whose server counted
    other prompt lengths than the schedule asked for."""
    models = [name for name, _ in schedule.workload.models]
    notes = [f"prompts sized with {schedule.tokenizers.describe(models)}"]
    for env, runs in ((a, runs_a), (b, runs_b)):
        records = [r for run in runs for r in run.result.records]
        notes += prompt_length_warnings(
            records, tokenizer_given=schedule.tokenizers.given, label=f"{env.name}: "
        )
    return notes


def _live_rate(
    options: CompareOptions, unit: float | None, scale: float
) -> tuple[float, float | None]:
    """(wall-time rate, load) of the live schedule."""
    if options.rate is not None and options.mode == "live":
        return options.rate, None if unit is None else options.rate * scale / unit
    if options.load is not None:
        if unit is None:
            raise EnvironmentsError(
                "--load needs both environments to be local fleets (their saturation rate "
                "is found in virtual time); give --rate for URL environments"
            )
        return options.load * unit / scale, options.load
    if unit is None:
        return URL_RATE, None
    rate = min(LIVE_WALL_RATE, LIVE_LOAD * unit / scale)
    return rate, rate * scale / unit


def _headline(result: Comparison) -> tuple[str, str | None]:
    a, b = result.a.name, result.b.name
    parts: list[str] = []
    better: str | None = None
    if result.sweep and result.capacity:
        rate = result.capacity[0].rate
        loads = f"{result.sweep[0].load:.2f}-{result.sweep[-1].load:.2f}"
        parts.append(
            f"over loads {loads} of {a}'s saturation rate ({rate:.0f} req/s, virtual time): "
            + sweep_verdict(curves(result.sweep), a, b)
            + "".join(f"; {line}" for line in result.past_sustained())
        )
    if result.point is not None:
        decision = result.point.judged.verdict
        parts.append(f"at {result.point.describe()} (virtual time): {decision.line}")
        better = decision.better
    if result.live is not None:
        live = result.live
        decision = live.judged.verdict
        at = f"load {live.load:.2f}" if live.load is not None else "the rate given"
        head = f"live at {at} ({live.judged.runs} run(s) a side): {decision.line}"
        if live.agreement is not None:
            head += f"; {live.agreement.describe()}"
        parts.append(head)
        if not result.sweep and result.point is None:
            better = decision.better
    return " || ".join(parts), better


def _results_dir(out: Path, a: str, b: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return new_dir(out / f"compare-{a}-vs-{b}-{stamp}")


def _capacity(cap: Capacity) -> dict[str, Any]:
    return {"rate": cap.rate, "per_model": cap.per_model, "bottleneck": cap.bottleneck}


def _point(point: VirtualPoint) -> dict[str, Any]:
    return {
        "load": point.load,
        "rate": point.rate,
        "concurrency": point.schedule.concurrency,
        "requests": len(point.schedule.requests),
        "verdict": point.judged.verdict.line,
        "better": point.judged.verdict.better,
        "engine_counters": {"a": point.a.counters, "b": point.b.counters},
        "differences": [d.to_dict() for d in point.judged.differences],
        "ttft_rise": {"a": _rise(point.rise_a), "b": _rise(point.rise_b)},
    }


def _rise(rise: Rise | None) -> dict[str, Any] | None:
    if rise is None:
        return None
    return {"model": rise.model, "ratio": rise.ratio, "rising": rise.rising}


def _figures(result: Comparison, side: str) -> dict[str, Any]:
    """A side's summary figures in hardware time, for `loadtest cost` and notebooks: the
    single virtual point's, else the live check's first run with its rates multiplied and
    its latencies divided by the time scale; none for a sweep alone."""
    if result.point is not None:
        played = result.point.a if side == "a" else result.point.b
        figures = summarize(played.records, result.workload).to_dict()
        return {"figures": figures, "figures_from": f"virtual time, {result.point.describe()}"}
    if result.live is None:
        return {}
    live = result.live
    run = (live.runs_a if side == "a" else live.runs_b)[0]
    scale = live.time_scale
    figures = to_hardware(run.summary.to_dict(), scale)
    return {"figures": figures, "figures_from": f"live run 1, time scale {scale:g} undone"}


def _document(
    result: Comparison, options: CompareOptions, seed: int, wall_s: float
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "a": {**as_dict(result.a), **_figures(result, "a")},
        "b": {**as_dict(result.b), **_figures(result, "b")},
        "workload": result.workload.name,
        "seed": seed,
        "mode": options.mode,
        "min_effect": options.min_effect,
        "verdict": result.verdict,
        "better": result.better,
        "units": {f.name: f.unit for f in figures()},
    }
    if result.capacity is not None:
        doc["capacity"] = {"a": _capacity(result.capacity[0]), "b": _capacity(result.capacity[1])}
    if result.sweep:
        doc["sweep"] = [_point(p) for p in result.sweep]
        doc["sweep_verdict"] = sweep_verdict(curves(result.sweep), result.a.name, result.b.name)
    if result.point is not None:
        doc["virtual"] = _point(result.point)
    if result.live is not None:
        live = result.live
        doc["live"] = {
            "load": live.load,
            "time_scale": live.time_scale,
            "schedule": live.schedule.describe(),
            "requests": len(live.schedule.requests),
            "runs": live.judged.runs,
            "verdict": live.judged.verdict.line,
            "better": live.judged.verdict.better,
            "observations": live.judged.observations,
            "differences": [d.to_dict() for d in live.judged.differences],
            "directories": [
                str(run.directory.relative_to(result.directory))
                for run in live.runs_a + live.runs_b
            ],
            "lag_p99_s": {
                "a": [run.summary.lag.p99 for run in live.runs_a],
                "b": [run.summary.lag.p99 for run in live.runs_b],
            },
            "read_delay_p99_s": {
                "a": [run.result.read_delay.p99_s for run in live.runs_a],
                "b": [run.result.read_delay.p99_s for run in live.runs_b],
            },
        }
        if live.agreement is not None:
            doc["live"]["agreement"] = live.agreement.to_dict()
    if result.explain is not None:
        doc["explain"] = as_document(result.explain)
    doc["wall_time_s"] = wall_s
    return doc
