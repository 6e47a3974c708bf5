"""`loadtest suite run`: every target in turn, its points in the plan's order (the sweep engine
of `loadtest.sweep`), each point judged against the suite's limits, written down as it ends.

A local fleet is started before its target's first point that needs measuring and stopped
after its last. Ctrl-C (or SIGTERM, raised as KeyboardInterrupt by the command) stops the
point in flight, stops the fleet, and leaves the journal with every point that finished:
`--resume` carries on from there.
"""

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from loadtest.drive.progress import ProgressSink
from loadtest.environments.catalog import Environment, EnvironmentsError
from loadtest.suite.gpu import GpuTelemetry, load_nvml, write_gpu_samples
from loadtest.suite.model import Suite, SuiteError
from loadtest.suite.point import PointContext, measure_point
from loadtest.suite.rows import rows_of, summarize_target
from loadtest.suite.store import PointResult, Store
from loadtest.suite.target import LiveTarget, bring_up, environment_of
from loadtest.sweep.engine import Outcome, run_sweep
from loadtest.sweep.plans import Answer, GridPlan, SearchPlan
from loadtest.sweep.points import Point

Say = Callable[[str], None]


@dataclass
class TargetRun:
    env: Environment
    time_scale: float
    outcomes: list[Outcome[PointResult]] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    skipped: list[Point] = field(default_factory=list)


@dataclass
class SuiteRun:
    suite: Suite
    store: Store
    targets: list[TargetRun] = field(default_factory=list)
    status: str = "running"
    gpu: str = ""
    report: Path | None = None

    @property
    def directory(self) -> Path:
        return self.store.directory


@dataclass(frozen=True)
class RunOptions:
    out: Path = Path("results")
    resume: bool = False
    # Replace the suite's targets (URLs or environment names).
    targets: tuple[str, ...] = ()
    api_key: str | None = None
    ready_timeout_s: float = 90.0
    # Replace the suite's time scale for local fleets.
    time_scale: float | None = None
    report: bool = True


def run_suite(
    suite: Suite,
    options: RunOptions,
    *,
    say: Say = lambda _text: None,
    progress: Callable[[], ProgressSink | None] = lambda: None,
    nvml: Callable[[], Any] = load_nvml,
) -> SuiteRun:
    """Run `suite` to its end (or its interruption); results under `options.out`."""
    names = options.targets or suite.targets
    if not names:
        raise SuiteError(
            f"suite {suite.source}: no target: give targets: [URL or environment] in the "
            "suite, or --target"
        )
    scale = options.time_scale if options.time_scale is not None else suite.time_scale
    # Every name is resolved before anything starts: a typo fails now, not after an hour.
    where = "--target" if options.targets else f"suite {suite.source}: targets"
    try:
        envs = [environment_of(name, suite.environments_file, scale) for name in names]
    except EnvironmentsError as exc:
        raise SuiteError(f"{where}: {exc}") from None
    # What the command line replaced is part of the definition: a resume must match it too.
    suite = replace(suite, targets=tuple(names), time_scale=scale)
    store = Store.resume(options.out, suite) if options.resume else Store.create(options.out, suite)
    run = SuiteRun(suite, store)
    say(f"suite {suite.name}: results in {store.directory}")
    for note in suite.notes:
        say(f"note: {note}")
    gpu = (
        GpuTelemetry(suite.telemetry.interval_s, say=say, nvml=nvml)
        if suite.telemetry.gpu
        else None
    )
    run.gpu = "off (telemetry.gpu: false)"
    if gpu is not None:
        started = gpu.start()
        run.gpu = gpu.status
        gpu = gpu if started else None
    try:
        for env in envs:
            target = TargetRun(env, env.time_scale or 1.0)
            run.targets.append(target)
            _run_target(run, target, options, gpu, say, progress)
        run.status = "finished"
    finally:
        if gpu is not None:
            gpu.stop()
            write_gpu_samples(gpu.samples, store.directory / "gpu.jsonl")
        if run.status != "finished":
            run.status = "interrupted"
            for target in run.targets:
                _conclude(suite, target)
        store.write_document(
            run.status,
            rows_of(suite, [(t.env.name, t.outcomes) for t in run.targets]),
            [
                summarize_target(
                    t.env,
                    t.time_scale,
                    t.outcomes,
                    t.answers,
                    t.skipped,
                    searched=suite.search is not None,
                )
                for t in run.targets
            ],
            run.gpu,
        )
        if options.report:
            # matplotlib takes seconds to import: only once the points are done.
            from loadtest.suite.report import write_suite_report

            run.report = write_suite_report(store.directory)
    return run


def _run_target(
    run: SuiteRun,
    target: TargetRun,
    options: RunOptions,
    gpu: GpuTelemetry | None,
    say: Say,
    progress: Callable[[], ProgressSink | None],
) -> None:
    suite, store, env = run.suite, run.store, target.env
    done = store.finished(env.name)
    plan = suite.plan()
    conditions = suite.conditions
    total = len(plan.points) if isinstance(plan, GridPlan) else None
    with ExitStack() as stack:
        up: list[LiveTarget] = []

        def live() -> LiveTarget:
            if not up:
                if env.is_local:
                    say(f"{env.describe()}: starting")
                log_dir = store.target_dir(env.name) / "logs"
                up.append(
                    stack.enter_context(
                        bring_up(env, log_dir=log_dir, ready_timeout_s=options.ready_timeout_s)
                    )
                )
            return up[0]

        def measure(point: Point) -> PointResult:
            order = len(target.outcomes) + 1
            where = f"{order}/{total}" if total else f"{order}"
            context = PointContext(suite, live(), store.directory, gpu, options.api_key)
            say(f"[{env.name} {where}] {point.label()}")
            directory = store.point_dir(env.name, order, point)
            return measure_point(context, point, directory, progress())

        def judge(
            point: Point, result: PointResult, line: Sequence[Outcome[PointResult]]
        ) -> str | None:
            if conditions is None:
                return None
            return conditions.failed(result.figures, [o.result.figures for o in line])

        def after(outcome: Outcome[PointResult]) -> None:
            target.outcomes.append(outcome)
            if outcome.resumed:
                say(f"[{env.name}] {outcome.point.label()}: finished earlier, kept")
                return
            store.record(env.name, outcome)
            say(f"  {describe(outcome.result)}")
            if outcome.failed is not None:
                verb = "fails" if isinstance(plan, SearchPlan) else "saturation point"
                say(f"  -> {verb}: {outcome.failed}")

        run_sweep(plan, measure, judge=judge, resume=lambda p: done.get(p.key), after=after)

    for line in _conclude(suite, target):
        say(line)


def _conclude(suite: Suite, target: TargetRun) -> list[str]:
    """A target's answers from the points it has (all of them, or those before an
    interruption): a search's best values, or a grid's skipped points."""
    plan = suite.plan()
    if isinstance(plan, SearchPlan):
        target.answers = plan.answers(target.outcomes)
        return [f"{target.env.name}: {answer.describe()}" for answer in target.answers]
    target.skipped = plan.skipped(target.outcomes)
    if not target.skipped:
        return []
    return [f"{target.env.name}: {len(target.skipped)} point(s) skipped after a saturation point"]


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def describe(result: PointResult) -> str:
    """One line of a point's key figures (hardware time)."""
    f = result.figures
    offered = f.get("offered_rps")
    done = f.get("completion_rps") or f.get("throughput_rps") or 0.0
    served = f.get("served_rps")
    rates = f"offered {offered:.3g} req/s, " if offered is not None else ""
    rates += f"served {served:.3g}, " if offered is not None and served is not None else ""
    rates += f"done {done:.3g} req/s"
    lag = f.get("lag_p99_s")
    lag_text = "" if result.closed_loop or lag is None else f", lag p99 {lag * 1000:.1f} ms"
    if not result.lag_ok and not result.closed_loop:
        lag_text += " (over the 5 ms budget: the client, not only the server, is measured)"
    return (
        f"{rates}, {f.get('output_tokens_per_s') or 0:.0f} output tokens/s, "
        f"TTFT p50/p99 {_ms(f.get('ttft_p50_s'))}/{_ms(f.get('ttft_p99_s'))} ms, "
        f"ITL p50/p99 {_ms(f.get('itl_p50_s'))}/{_ms(f.get('itl_p99_s'))} ms, "
        f"errors {f.get('error_rate') or 0:.1%}{lag_text}"
    )
