"""Run one seeded schedule against environment A, then B, and compare them.

Each side: start the environment (when local), sample its replicas while the schedule
runs, stop it, write its records and summary. Then every summary figure is compared with
a bootstrap 95% interval of B - A, a verdict is drawn on TTFT p99 and goodput, and
compare.json and report.html are written under results/compare-<A>-vs-<B>-<time>/.
"""

import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from loadtest.analysis.checks import prompt_length_warnings, read_delay_line
from loadtest.analysis.results import new_dir, summary_document
from loadtest.analysis.stats import Difference, Side, compare_sides, figures
from loadtest.analysis.summary import Summary, in_warmup, summarize
from loadtest.analysis.verdict import SideFacts, observations, verdict
from loadtest.drive.progress import ProgressSink
from loadtest.drive.records import RequestRecord
from loadtest.drive.runner import LAG_BUDGET_S, RunResult, run_async
from loadtest.environments.catalog import (
    Environment,
    as_dict,
    common_tokenizer,
    load_environments,
    resolve,
)
from loadtest.environments.identity import tokenizer_warnings
from loadtest.environments.launcher import launch
from loadtest.environments.sampler import (
    ReplicaSample,
    ReplicaSampler,
    engine_counters,
    sampled_run,
    write_samples,
)
from loadtest.workload import Workload, load_workload
from loadtest.workload.counting import TokenizerChoice, load_tokenizers
from loadtest.workload.schedule import Schedule, build_schedule

if TYPE_CHECKING:
    from loadtest.analysis.report import ReportSide


@dataclass(frozen=True)
class CompareOptions:
    workload: str = "chat-mixed"
    rate: float | None = None
    concurrency: int | None = None
    duration: float | None = None
    requests: int | None = None
    seed: int | None = None
    # Applied to local fleets whose environment names no time scale of its own.
    time_scale: float = 1.0
    environments_file: Path | None = None
    out: Path = Path("results")
    ready_timeout_s: float = 90.0
    resamples: int = 1000
    sample_interval_s: float = 0.5
    api_key: str | None = None
    # --tokenizer values (NAME_OR_PATH or MODEL=NAME_OR_PATH); else the environments' own.
    tokenizer: tuple[str, ...] = ()


@dataclass
class SideRun:
    """One side's environment, run and figures."""

    env: Environment
    directory: Path
    result: RunResult
    summary: Summary
    samples: list[ReplicaSample] = field(default_factory=list)
    replicas: list[dict[str, str]] = field(default_factory=list)
    # Engine counters summed over the replicas after the run (prefix cache, preemptions).
    counters: dict[str, Any] = field(default_factory=dict)


@dataclass
class Comparison:
    a: SideRun
    b: SideRun
    differences: list[Difference]
    verdict: str
    better: str | None
    reasons: list[str]
    directory: Path
    document: dict[str, Any]


def prepare(
    a_name: str, b_name: str, options: CompareOptions
) -> tuple[Environment, Environment, Workload, Schedule]:
    """Resolve both environments and build the one schedule, before starting anything."""
    envs = load_environments(options.environments_file)
    a = resolve(envs, a_name).with_time_scale(options.time_scale)
    b = resolve(envs, b_name).with_time_scale(options.time_scale)
    workload = load_workload(options.workload)
    models = [name for name, _ in workload.models]
    choice = common_tokenizer(TokenizerChoice.parse(options.tokenizer), a, b, models)
    schedule = build_schedule(
        workload,
        seed=options.seed,
        rate=options.rate,
        concurrency=options.concurrency,
        duration=options.duration,
        requests=options.requests,
        tokenizers=load_tokenizers(choice),
    )
    return a, b, workload, schedule


def judged_workload(workload: Workload, a: Environment, b: Environment) -> Workload:
    """`workload` with its SLO targets multiplied by the fleets' common time scale.

    A fleet at time scale F serves every request F times slower in wall time, so a target
    met on real hardware is met at F times the target here. Sides at different scales
    cannot be judged against one target; they keep the workload's own.
    """
    scales = {env.time_scale or 1.0 for env in (a, b)}
    if len(scales) != 1 or scales == {1.0}:
        return workload
    factor = scales.pop()
    slo = workload.slo
    scaled = type(slo)(
        ttft_s=None if slo.ttft_s is None else slo.ttft_s * factor,
        tpot_s=None if slo.tpot_s is None else slo.tpot_s * factor,
    )
    return replace(workload, slo=scaled)


def results_dir(out: Path, a: str, b: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return new_dir(out / f"compare-{a}-vs-{b}-{stamp}")


def run_side(
    env: Environment,
    workload: Workload,
    schedule: Schedule,
    directory: Path,
    options: CompareOptions,
    progress: ProgressSink | None = None,
) -> SideRun:
    """Start `env`, run the schedule against it while sampling its replicas, stop it."""
    directory.mkdir(parents=True, exist_ok=True)
    with launch(env, log_dir=directory / "logs", ready_timeout_s=options.ready_timeout_s) as up:
        sampler = ReplicaSampler(
            admin_url=up.admin_url,
            replicas=[(r.name, r.url) for r in up.replicas],
            interval_s=options.sample_interval_s,
        )
        result = run_async(
            sampled_run(up.url, schedule, sampler, api_key=options.api_key, progress=progress)
        )
        replicas = [{"name": r.name, "model": r.model, "url": r.url} for r in up.replicas]
        counters = engine_counters([(r.name, r.url) for r in up.replicas])
    summary = summarize(result.records, workload)
    side = SideRun(env, directory, result, summary, sampler.samples, replicas, counters)
    _write_side(side)
    return side


def _write_side(side: SideRun) -> None:
    with (side.directory / "records.jsonl").open("wb") as sink:
        for record in side.result.records:
            sink.write(orjson.dumps(record.to_dict()) + b"\n")
    document = summary_document(side.result, side.summary)
    document["environment"] = as_dict(side.env)
    document["replica_endpoints"] = side.replicas
    document["engine_counters"] = side.counters
    _write_json(side.directory / "summary.json", document)
    write_samples(side.samples, side.directory / "replicas.jsonl")


def _write_json(path: Path, document: Any) -> None:
    path.write_bytes(
        orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    )


def replica_labels(side: SideRun) -> dict[str, str]:
    """Replica name (host:port) -> "r<i> <model>": the same label on both sides, whose ports
    differ, so that plots and notes line the replicas up."""
    return {r["name"]: f"r{i} {r['model'].split('/')[-1]}" for i, r in enumerate(side.replicas)}


def labelled(side: SideRun) -> tuple[list[RequestRecord], list[ReplicaSample]]:
    """The side's records and samples with replicas named by `replica_labels`."""
    labels = replica_labels(side)
    if not labels:
        return side.result.records, side.samples
    records = [
        replace(r, replica=labels.get(r.replica, r.replica)) if r.replica else r
        for r in side.result.records
    ]
    samples = [replace(s, replica=labels.get(s.replica, s.replica)) for s in side.samples]
    return records, samples


def _measured(side: SideRun, workload: Workload) -> list[RequestRecord]:
    warm = in_warmup(side.result.records, workload)
    return [r for r in side.result.records if r.index not in warm]


def common_window(measured: list[RequestRecord], window_a: float, window_b: float) -> float:
    """The seconds both sides' rates are divided by: the span of the measured schedule.

    Each side's own window ends with its last response, so it depends on that side's
    latency; dividing by it would make rates differ when the same requests all succeed.
    Closed loop has no schedule span: the mean of the two windows stands in.
    """
    sent = [r.scheduled_s for r in measured]
    span = max(sent) - min(sent) if sent else 0.0
    if span >= 1.0:
        return span
    return max((window_a + window_b) / 2, 1e-9)


def judge(
    a: SideRun, b: SideRun, workload: Workload, *, resamples: int, seed: int
) -> tuple[list[Difference], str, str | None, list[str]]:
    slo = workload.slo
    measured_a, measured_b = _measured(a, workload), _measured(b, workload)
    window = common_window(measured_a, a.summary.window_s, b.summary.window_s)
    side_a = Side.of(measured_a, duration_s=window, slo=slo)
    side_b = Side.of(measured_b, duration_s=window, slo=slo)
    diffs = compare_sides(side_a, side_b, resamples=resamples, seed=seed)
    line, better = verdict(diffs, a.env.name, b.env.name)
    facts = [
        SideFacts(
            s.env.name,
            m,
            labelled(s)[1],
            s.summary.lag.p99 or 0.0,
            s.summary.replica_cv,
            s.summary.goodput_fraction,
            s.counters,
            s.result.read_delay.p99_s,
        )
        for s, m in ((a, measured_a), (b, measured_b))
    ]
    return diffs, line, better, observations(diffs, facts[0], facts[1])


def notes_for(a: SideRun, b: SideRun, schedule: Schedule, workload: Workload) -> list[str]:
    """Context a reader needs: workload, schedule, time scale, lag, where the files are."""
    slo = workload.slo
    notes = [
        f"workload {workload.name}: {schedule.describe()}, seed {schedule.seed}; "
        "both sides received the identical schedule",
        f"goodput counts requests with TTFT <= {_target(slo.ttft_s)} and TPOT <= "
        f"{_target(slo.tpot_s)} ({_slo_origin(a.env, b.env)})",
    ]
    for side in (a, b):
        scale = side.env.time_scale
        where = side.env.describe()
        if scale is not None and scale != 1:
            where += (
                f" (every simulated duration x{scale:g}: the fleet plays {scale:g} times slower "
                "than real hardware so that two CPU cores can keep up; latencies are in wall "
                "time at that scale)"
            )
        notes.append(where)
        if side.counters:
            notes.append(f"{side.env.name}: engine counters after the run {_counters(side)}")
        lag = side.summary.lag
        p50, p99 = lag.p50 or 0.0, lag.p99 or 0.0
        notes.append(
            f"{side.env.name}: generator lag (measured requests) p50 {p50 * 1000:.2f} ms, "
            f"p99 {p99 * 1000:.2f} ms ({'within' if p99 <= LAG_BUDGET_S else 'OVER'} the "
            f"{LAG_BUDGET_S * 1000:g} ms budget)"
        )
        notes.append(f"{side.env.name}: {read_delay_line(side.result.read_delay)[1]}")
        notes.extend(
            prompt_length_warnings(
                side.result.records,
                tokenizer_given=schedule.tokenizers.given,
                label=f"{side.env.name}: ",
            )
        )
    models = [name for name, _ in workload.models]
    notes.append(f"prompts sized with {schedule.tokenizers.describe(models)}")
    notes.append(
        "intervals: paired block bootstrap over the schedule's requests "
        "(same request indices on both sides), 95%; rates are over the measured schedule's "
        "span, common to both sides (summary.json divides by each side's own window)"
    )
    return notes


def _slo_origin(a: Environment, b: Environment) -> str:
    scales = {env.time_scale or 1.0 for env in (a, b)}
    if len(scales) == 1 and scales != {1.0}:
        return f"the workload's targets x {scales.pop():g}, the fleets' time scale"
    if len(scales) > 1:
        return "the workload's targets (the sides run at different time scales)"
    return "the workload's targets"


def _target(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:g} ms"


def _counters(side: SideRun) -> str:
    return ", ".join(
        f"{k} {v:.1%}" if k.endswith("rate") else f"{k} {v:.0f}" for k, v in side.counters.items()
    )


def units() -> dict[str, str]:
    return {f.name: f.unit for f in figures()}


def finish(
    a: SideRun,
    b: SideRun,
    workload: Workload,
    schedule: Schedule,
    directory: Path,
    options: CompareOptions,
    started: float,
) -> Comparison:
    """Compare the two sides and write compare.json and report.html."""
    diffs, line, better, reasons = judge(
        a, b, workload, resamples=options.resamples, seed=schedule.seed
    )
    notes = notes_for(a, b, schedule, workload)
    document = {
        "a": _side_document(a, directory),
        "b": _side_document(b, directory),
        "workload": workload.name,
        "schedule": schedule.describe(),
        "seed": schedule.seed,
        "requests": len(schedule.requests),
        "verdict": line,
        "better": better,
        "reasons": reasons,
        "notes": notes,
        "differences": [d.to_dict() for d in diffs],
    }
    # matplotlib takes seconds to import: only when a report is drawn.
    from loadtest.analysis.report import render_compare

    report = render_compare(
        _report_side(a, workload),
        _report_side(b, workload),
        diffs,
        units=units(),
        verdict=line,
        reasons=reasons,
        notes=notes,
    )
    (directory / "report.html").write_text(report)
    document["wall_time_s"] = time.monotonic() - started
    _write_json(directory / "compare.json", document)
    return Comparison(a, b, diffs, line, better, reasons, directory, document)


def _side_document(side: SideRun, root: Path) -> dict[str, Any]:
    return {
        "environment": as_dict(side.env),
        "directory": str(side.directory.relative_to(root)),
        "figures": side.summary.to_dict(),
        "replicas": dict(side.summary.replicas),
        "lag_p99_s": side.summary.lag.p99,
        "engine_counters": side.counters,
        "duration_s": side.result.duration_s,
    }


def _report_side(side: SideRun, workload: Workload) -> "ReportSide":
    from loadtest.analysis.report import ReportSide

    records, samples = labelled(side)
    return ReportSide(
        label=side.env.name,
        records=records,
        figures=side.summary.to_dict(),
        samples=samples,
        started_at=side.result.started_at.timestamp(),
        warmup=frozenset(in_warmup(side.result.records, workload)),
        description=side.env.describe(),
    )


def compare(
    a_name: str,
    b_name: str,
    options: CompareOptions,
    *,
    progress: ProgressSink | None = None,
    announce: Any = None,
) -> Comparison:
    """The whole comparison. `announce(text)` is told what happens, step by step."""
    t0 = time.monotonic()
    say = announce or (lambda _text: None)
    env_a, env_b, workload, schedule = prepare(a_name, b_name, options)
    workload = judged_workload(workload, env_a, env_b)
    directory = results_dir(options.out, a_name, b_name)
    say(f"{workload.name}: {schedule.describe()}, seed {schedule.seed}")
    for line in tokenizer_warnings(env_a, env_b, schedule.tokenizers):
        say(line)
    sides = []
    for label, env in (("a", env_a), ("b", env_b)):
        say(f"{label.upper()} = {env.describe()}: starting")
        side_dir = directory / f"{label}-{env.name}"
        sides.append(run_side(env, workload, schedule, side_dir, options, progress))
        say(f"{label.upper()} = {env.name}: done, stopped")
    return finish(sides[0], sides[1], workload, schedule, directory, options, t0)
