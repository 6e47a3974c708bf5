"""The study's fleet (the reference layout, or N copies of one profile) and its strategies."""

import inspect
from dataclasses import dataclass, replace

import routers
from loadtest.sim.engine import EngineConfig
from loadtest.sim.engines import VirtualReplica, deployed_replicas
from loadtest.sim.layout import FLEETS, deployment
from loadtest.sim.oracle import Oracle
from loadtest.sim.profiles import UnknownProfile, load_profile
from loadtest.workload.model import Workload
from routers.types import Strategy

MIN_REPLICAS, MAX_REPLICAS = 2, 500
DEFAULT_PROFILE = "qwen2.5-7b-h100"
ORACLE = "oracle"


class StudyError(ValueError):
    """Options the study cannot use; the message names the option and what is allowed."""


@dataclass(frozen=True)
class StudyFleet:
    """The replicas a study plays, and how it names them."""

    name: str
    replicas: tuple[VirtualReplica, ...]

    def copies(self) -> int:
        """How many replicas when they are copies of one profile and model, else 0."""
        kinds = {(r.profile, r.model, r.config, r.pool) for r in self.replicas}
        return len(self.replicas) if len(kinds) == 1 else 0

    def fit(self, workload: Workload) -> Workload:
        """`workload` on this fleet: N copies of one profile serve its one model, so every
        request goes to that model (the mix of lengths and prefixes is kept)."""
        models = {replica.model for replica in self.replicas}
        if None in models or len(models) != 1:
            return workload
        (model,) = models
        assert model is not None
        return replace(workload, models=((model, 1.0),))


def study_fleet(replicas: int | None, profile: str, fleet: str) -> StudyFleet:
    """The reference layout deployed as `fleet` (replicas None), or `replicas` copies of
    `profile` deployed that way."""
    if fleet not in FLEETS:
        raise StudyError(f"--fleet: unknown fleet {fleet!r}; allowed: {', '.join(FLEETS)}")
    if replicas is None:
        layout = deployment(fleet).layout
        return StudyFleet(f"{layout} fleet ({fleet})", tuple(deployed_replicas(fleet)))
    if not MIN_REPLICAS <= replicas <= MAX_REPLICAS:
        raise StudyError(
            f"--replicas: {replicas} is out of range; allowed: {MIN_REPLICAS} to {MAX_REPLICAS}"
        )
    try:
        model = load_profile(profile).model
    except UnknownProfile as exc:
        raise StudyError(f"--profile: {exc}") from None
    deployed = deployment(fleet)
    if deployed.elastic:
        raise StudyError(
            f"--fleet {fleet}: N copies of a profile are played as stock vLLM replicas; "
            "give --fleet baseline, or leave out --replicas for the reference layout"
        )
    config = EngineConfig(prefix_caching=deployed.prefix_caching)
    specs = tuple(
        VirtualReplica(f"replica-{i}", profile, config, None, model) for i in range(replicas)
    )
    return StudyFleet(f"{replicas} x {profile}", specs)


def strategy_specs(text: str) -> tuple[str, ...]:
    """'round_robin,lmetric:cache_tokens=1000000' -> the specs, each checked now."""
    specs = tuple(part.strip() for part in text.split(",") if part.strip())
    if not specs:
        raise StudyError("--strategies: give at least one strategy name")
    for spec in specs:
        new_strategy(spec, seed=1)
    return tuple(dict.fromkeys(specs))


def new_strategy(spec: str, *, seed: int) -> Strategy:
    """A fresh strategy for `spec` ("name" or "name:key=value,..."), seeded when it takes a
    seed; "oracle" is the study's oracle."""
    name, _, text = spec.partition(":")
    if name == ORACLE:
        if text:
            raise StudyError("--strategies: the oracle takes no options")
        return Oracle()
    try:
        options = routers.registry.parse_options(text.replace(";", ","))
        factory = routers.registry.factory(name)
        if "seed" in inspect.signature(factory).parameters and "seed" not in options:
            options["seed"] = seed
        return routers.load(name, **options)
    except (LookupError, ValueError) as exc:
        allowed = ", ".join([*routers.registry.available(), ORACLE])
        raise StudyError(f"--strategies: {spec!r}: {exc} (strategies: {allowed})") from None
