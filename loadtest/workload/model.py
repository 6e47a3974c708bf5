"""Workloads: which models, what lengths, at what pace.

Frozen dataclasses are what the rest of the load generator uses; the YAML format that builds
them is `loadtest.workload.format`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

LengthKind = Literal["fixed", "uniform", "lognormal", "empirical"]
ArrivalProcess = Literal["poisson", "gamma", "constant", "bursts", "concurrency"]
Api = Literal["chat", "completions"]


class WorkloadError(ValueError):
    """A workload that cannot be used; the message names the field and what is allowed."""


@dataclass(frozen=True, slots=True)
class LengthDist:
    """A distribution of token counts.

    fixed: always `value`. uniform: integers in [low, high]. lognormal: median `median`, log-space
    standard deviation `spread`, clipped to [low, high] when those are set. empirical: drawn
    uniformly from `values`.
    """

    kind: LengthKind
    value: int = 0
    low: int = 1
    high: int | None = None
    median: float = 0.0
    spread: float = 0.0
    values: tuple[int, ...] = ()

    def describe(self) -> str:
        if self.kind == "fixed":
            return f"{self.value}"
        if self.kind == "uniform":
            return f"uniform {self.low}-{self.high}"
        if self.kind == "lognormal":
            return f"lognormal median {self.median:g} spread {self.spread:g}"
        return f"empirical ({len(self.values)} values)"


@dataclass(frozen=True, slots=True)
class SharedPrefix:
    """A `fraction` of requests start with one of `groups` shared texts of `tokens` tokens."""

    fraction: float
    tokens: int
    groups: int


@dataclass(frozen=True, slots=True)
class Arrival:
    """When requests are sent.

    Open loop (the schedule fixes every send time): poisson and constant at `rate` req/s; gamma
    at `rate` with shape `burstiness` (1 is Poisson, below 1 burstier); bursts of `burst_size`
    requests every `burst_interval_s`. Closed loop: `concurrency` requests always in flight.
    """

    process: ArrivalProcess
    rate: float | None = None
    burstiness: float = 1.0
    burst_size: int = 1
    burst_interval_s: float = 1.0
    concurrency: int | None = None

    @property
    def closed_loop(self) -> bool:
        return self.process == "concurrency"

    def describe(self) -> str:
        if self.process == "concurrency":
            return f"closed loop, concurrency {self.concurrency}"
        if self.process == "bursts":
            return f"bursts of {self.burst_size} every {self.burst_interval_s:g}s"
        if self.process == "gamma":
            return f"gamma {self.rate:g} req/s burstiness {self.burstiness:g}"
        return f"{self.process} {self.rate:g} req/s"


@dataclass(frozen=True, slots=True)
class Warmup:
    """Requests excluded from the summary: the first `requests`, and any scheduled before
    `seconds` into the run."""

    requests: int = 0
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Slo:
    """Targets a request must meet to count towards goodput; None means no target."""

    ttft_s: float | None = None
    tpot_s: float | None = None


@dataclass(frozen=True, slots=True)
class Phase:
    """A stretch of `duration_s` seconds during which requests go to `models` (model, share;
    shares sum to 1, a model may get none)."""

    duration_s: float
    models: tuple[tuple[str, float], ...]

    def describe(self) -> str:
        busy = [f"{name.split('/')[-1]} {share:.0%}" for name, share in self.models if share > 0]
        return f"{self.duration_s:g}s {', '.join(busy)}"


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    description: str
    # (model, share of traffic); shares sum to 1. With phases: their average over a cycle.
    models: tuple[tuple[str, float], ...]
    prompt_tokens: LengthDist
    output_tokens: LengthDist
    arrival: Arrival
    duration_s: float | None = None
    requests: int | None = None
    shared_prefix: SharedPrefix | None = None
    warmup: Warmup = field(default_factory=Warmup)
    seed: int = 0
    ignore_eos: bool = True
    stream: bool = True
    api: Api = "chat"
    slo: Slo = field(default_factory=Slo)
    # Per-request limit on the whole exchange, so that nothing waits forever.
    timeout_s: float = 300.0
    # A mix of models that moves over time: the phases, in order, repeated while the run lasts
    # (empty: `models` all along).
    phases: tuple[Phase, ...] = ()

    def stretched(self, factor: float) -> Workload:
        """This workload with its phases `factor` times longer: what a fleet played `factor`
        times slower than the hardware (compare's time scale) must see."""
        if not self.phases or factor == 1.0:
            return self
        phases = tuple(Phase(p.duration_s * factor, p.models) for p in self.phases)
        return replace(self, phases=phases)

    @property
    def cycle_s(self) -> float:
        """Seconds of one pass through the phases (0 without phases)."""
        return sum(phase.duration_s for phase in self.phases)

    def peak_shares(self) -> dict[str, float]:
        """Each model's largest share in any phase (its share when there are no phases)."""
        if not self.phases:
            return dict(self.models)
        return {
            name: max(dict(phase.models).get(name, 0.0) for phase in self.phases)
            for name, _ in self.models
        }

    def describe(self) -> str:
        """One line: what this workload sends."""
        mix = "/".join(f"{share * 100:.0f}" for _, share in self.models)
        if self.phases:
            mix = f"in phases ({' -> '.join(p.describe() for p in self.phases)}, repeated)"
        length = (
            f"{self.duration_s:g}s"
            if self.duration_s
            else f"{self.requests} requests"
            if self.requests
            else "length set at run time"
        )
        prefix = (
            f", {self.shared_prefix.fraction:.0%} share {self.shared_prefix.groups} prefixes"
            if self.shared_prefix
            else ""
        )
        return (
            f"{len(self.models)} models {mix}, {self.arrival.describe()}, {length}, "
            f"prompt {self.prompt_tokens.describe()}, output {self.output_tokens.describe()}"
            f"{prefix}"
        )
