"""Workloads: which models, what lengths, at what pace.

Frozen dataclasses are what the rest of the load generator uses; the YAML format that builds
them is `loadtest.workload.format`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
class Workload:
    name: str
    description: str
    # (model, share of traffic); shares sum to 1.
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

    def describe(self) -> str:
        """One line: what this workload sends."""
        mix = "/".join(f"{share * 100:.0f}" for _, share in self.models)
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
