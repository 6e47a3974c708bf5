"""Both environments live: each run starts the environment (when local), plays the schedule
while sampling its replicas, stops it, and writes its records. Repeats alternate A B B A, so
that a drift of the machine over the session weighs on both sides alike."""

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from loadtest.analysis.results import summary_document
from loadtest.analysis.summary import Summary, summarize
from loadtest.compare.judge import Runs
from loadtest.compare.options import CompareOptions
from loadtest.drive.progress import ProgressSink
from loadtest.drive.records import RequestRecord
from loadtest.drive.runner import RunResult, run_async
from loadtest.environments.catalog import Environment, as_dict
from loadtest.environments.launcher import launch
from loadtest.environments.sampler import (
    ReplicaSample,
    ReplicaSampler,
    engine_counters,
    sampled_run,
    write_samples,
)
from loadtest.workload.model import Workload
from loadtest.workload.schedule import Schedule


@dataclass
class SideRun:
    """One run of one side: its environment, results and what was sampled."""

    env: Environment
    directory: Path
    result: RunResult
    summary: Summary
    samples: list[ReplicaSample] = field(default_factory=list)
    replicas: list[dict[str, str]] = field(default_factory=list)
    # Engine counters summed over the replicas after the run (prefix cache, preemptions).
    counters: dict[str, Any] = field(default_factory=dict)

    def labels(self) -> dict[str, str]:
        """Replica name (host:port) -> "r<i> <model>": the same label for every run, whose
        ports differ, so that plots and notes line the replicas up."""
        return {r["name"]: f"r{i} {r['model'].split('/')[-1]}" for i, r in enumerate(self.replicas)}

    def labelled(self) -> tuple[list[RequestRecord], list[ReplicaSample]]:
        """The run's records and samples with replicas named by `labels`."""
        labels = self.labels()
        if not labels:
            return self.result.records, self.samples
        records = [
            replace(r, replica=labels.get(r.replica, r.replica)) if r.replica else r
            for r in self.result.records
        ]
        samples = [replace(s, replica=labels.get(s.replica, s.replica)) for s in self.samples]
        return records, samples


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
    side = SideRun(
        env,
        directory,
        result,
        summarize(result.records, workload),
        sampler.samples,
        replicas,
        counters,
    )
    _write_side(side)
    return side


def run_repeats(
    envs: tuple[Environment, Environment],
    workload: Workload,
    schedule: Schedule,
    root: Path,
    options: CompareOptions,
    *,
    progress: ProgressSink | None = None,
    say: Callable[[str], None] = lambda _text: None,
) -> tuple[list[SideRun], list[SideRun]]:
    """`options.repeats` runs of each side in A B B A order."""
    runs: tuple[list[SideRun], list[SideRun]] = ([], [])
    for k in range(options.repeats):
        order = (0, 1) if k % 2 == 0 else (1, 0)
        for side in order:
            env, label = envs[side], "ab"[side]
            directory = root / f"{label}-{env.name}" / f"run-{k + 1}"
            say(f"live {label.upper()} = {env.describe()}: run {k + 1} of {options.repeats}")
            runs[side].append(run_side(env, workload, schedule, directory, options, progress))
    return runs


def as_runs(name: str, runs: list[SideRun]) -> Runs:
    """A side's live runs for judging, replicas labelled alike across runs."""
    labelled = [run.labelled() for run in runs]
    return Runs(
        name,
        [records for records, _ in labelled],
        [sample for _, samples in labelled for sample in samples],
        runs[0].counters if runs else {},
        [run.summary.lag.p99 or 0.0 for run in runs],
        [run.result.read_delay.p99_s for run in runs],
    )


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


def _write_side(side: SideRun) -> None:
    with (side.directory / "records.jsonl").open("wb") as sink:
        for record in side.result.records:
            sink.write(orjson.dumps(record.to_dict()) + b"\n")
    document = summary_document(side.result, side.summary)
    document["environment"] = as_dict(side.env)
    document["replica_endpoints"] = side.replicas
    document["engine_counters"] = side.counters
    write_json(side.directory / "summary.json", document)
    write_samples(side.samples, side.directory / "replicas.jsonl")


def write_json(path: Path, document: Any) -> None:
    path.write_bytes(
        orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    )
