"""One point of a suite, live: its schedule against the target while the replicas (and the
GPUs) are sampled, its files, then the cool-down."""

import time
from dataclasses import dataclass
from pathlib import Path

from loadtest.analysis.results import write_run_files
from loadtest.drive.progress import ProgressSink
from loadtest.drive.runner import LAG_BUDGET_S, run_async
from loadtest.environments.sampler import ReplicaSampler, sampled_run, write_samples
from loadtest.suite.figures import point_figures
from loadtest.suite.gpu import GpuTelemetry, write_gpu_samples
from loadtest.suite.model import Suite
from loadtest.suite.store import PointResult
from loadtest.suite.target import LiveTarget, counter_delta
from loadtest.sweep.points import Point


@dataclass(frozen=True)
class PointContext:
    suite: Suite
    live: LiveTarget
    root: Path
    gpu: GpuTelemetry | None = None
    api_key: str | None = None


def measure_point(
    context: PointContext,
    point: Point,
    directory: Path,
    progress: ProgressSink | None = None,
) -> PointResult:
    """Run `point` against the target, write its files into `directory`, cool down."""
    suite, live = context.suite, context.live
    at = suite.workload_at(point)
    scale = live.time_scale
    schedule = at.schedule(scale, seed=suite.seed)
    telemetry = suite.telemetry
    sampler = (
        live.sampler(telemetry.interval_s) if telemetry.replicas else ReplicaSampler(admin_url=None)
    )
    before = live.counters() if telemetry.replicas else {}
    started = time.time()
    result = run_async(
        sampled_run(live.url, schedule, sampler, api_key=context.api_key, progress=progress)
    )
    ended = time.time()
    counters = counter_delta(before, live.counters()) if telemetry.replicas else {}
    summary, figures = point_figures(
        result.records, at.judged(scale), scale=scale, closed_loop=schedule.closed_loop
    )
    extra = {
        "point": dict(point.values),
        "target": live.name,
        "time_scale": scale,
        "figures_hardware": figures,
        "engine_counters": counters,
        "replica_sampling": (
            sampler.describe() if telemetry.replicas else "off (telemetry.replicas: false)"
        ),
    }
    write_run_files(directory, result, summary, extra)
    write_samples(sampler.samples, directory / "replicas.jsonl")
    if context.gpu is not None:
        write_gpu_samples(context.gpu.between(started, ended), directory / "gpu.jsonl")
    if suite.cooldown_s > 0:
        time.sleep(suite.cooldown_s)
    return PointResult(
        directory=str(directory.relative_to(context.root)),
        started_at=started,
        ended_at=ended,
        figures=figures,
        schedule=schedule.describe(),
        requests=len(result.records),
        closed_loop=schedule.closed_loop,
        # Judged on the measured requests, as the figures are (warm-up left out).
        lag_ok=(figures.get("lag_p99_s") or 0.0) <= LAG_BUDGET_S,
        counters=counters,
    )
