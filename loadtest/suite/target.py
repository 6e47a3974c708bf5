"""A suite's target, up for the whole sweep: a URL, or an environment (a local fleet is
started once, before its first point, and always stopped after its last)."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from loadtest.environments.catalog import Environment, load_environments, resolve
from loadtest.environments.launcher import launch
from loadtest.environments.sampler import ReplicaSampler, engine_counters, target_sampler


def is_url(target: str) -> bool:
    return target.startswith(("http://", "https://"))


def environment_of(
    target: str, environments_file: Path | None, time_scale: float | None
) -> Environment:
    """The environment a target names (a URL is an environment of its own); local fleets get
    `time_scale` unless they name their own. EnvironmentsError for an unknown name."""
    if is_url(target):
        return Environment(name=target, url=target.rstrip("/"))
    env = resolve(load_environments(environments_file), target)
    return env.with_time_scale(time_scale) if time_scale is not None else env


@dataclass
class LiveTarget:
    """Where a suite's requests go, and what to sample there."""

    name: str
    url: str
    env: Environment
    admin_url: str | None = None
    replicas: list[tuple[str, str]] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)

    @property
    def time_scale(self) -> float:
        return self.env.time_scale or 1.0

    def sampler(self, interval_s: float, admin_key: str | None = None) -> ReplicaSampler:
        if self.env.is_local:
            return ReplicaSampler(
                admin_url=self.admin_url, replicas=self.replicas, interval_s=interval_s
            )
        return target_sampler(self.url, admin_key, interval_s)

    def counters(self) -> dict[str, Any]:
        """The replicas' prefix-cache and preemption counters now (cumulative)."""
        if self.replicas:
            return engine_counters(self.replicas)
        base = self.url.rstrip("/").removesuffix("/v1")
        return engine_counters([(urlsplit(base).netloc, base)])


@contextmanager
def bring_up(
    env: Environment, *, log_dir: Path, ready_timeout_s: float = 90.0
) -> Iterator[LiveTarget]:
    if env.url is not None:
        yield LiveTarget(env.name, env.url, env, admin_url=env.url)
        return
    with launch(env, log_dir=log_dir, ready_timeout_s=ready_timeout_s) as up:
        yield LiveTarget(
            env.name,
            up.url,
            env,
            admin_url=up.admin_url,
            replicas=[(r.name, r.url) for r in up.replicas],
            pids=up.pids,
        )


def counter_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What the counters added while a point ran, with its prefix-cache hit rate."""
    out = {
        key: after[key] - before.get(key, 0.0)
        for key in after
        if key != "prefix_cache_hit_rate" and isinstance(after[key], (int, float))
    }
    queries = out.get("prefix_cache_queries", 0.0)
    if queries > 0:
        out["prefix_cache_hit_rate"] = out.get("prefix_cache_hits", 0.0) / queries
    return out
