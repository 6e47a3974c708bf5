"""The workload YAML format: validated with pydantic at the edge, built into `Workload`.

Errors name the field and what is allowed. Shorthands (an integer for a length, a list of
model names, an integer warm-up) are expanded before validation, so every field has one
shape and every error points at a plain field path. The classic testbench fields
(num_requests, concurrent_requests, arrival_pattern, rate_per_second, prompt_tokens_min/max,
completion_tokens, context_lengths) are accepted and mapped to the native ones; giving both
spellings of one thing is an error.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from loadtest.workload.model import (
    Api,
    Arrival,
    ArrivalProcess,
    LengthDist,
    LengthKind,
    Phase,
    SharedPrefix,
    Slo,
    Warmup,
    Workload,
    WorkloadError,
)

_Pattern = Literal["poisson", "constant", "uniform", "gamma", "bursts", "burst"]
_LENGTH_SHAPES = "an integer or {dist: fixed|uniform|lognormal|empirical, ...}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LengthSpec(_Strict):
    dist: LengthKind
    value: int | None = Field(default=None, ge=1)
    min: int | None = Field(default=None, ge=1)
    max: int | None = Field(default=None, ge=1)
    median: float | None = Field(default=None, gt=0)
    spread: float | None = Field(default=None, ge=0)
    values: list[int] | None = None

    @model_validator(mode="after")
    def _fields_for_dist(self) -> LengthSpec:
        needs = {
            "fixed": ("value",),
            "uniform": ("min", "max"),
            "lognormal": ("median", "spread"),
            "empirical": ("values",),
        }[self.dist]
        missing = [name for name in needs if getattr(self, name) is None]
        if missing:
            raise ValueError(f"dist {self.dist} needs {' and '.join(needs)}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not exceed max")
        if self.dist == "empirical" and (not self.values or min(self.values) < 1):
            raise ValueError("values must be a non-empty list of positive integers")
        return self

    def to_dist(self) -> LengthDist:
        return LengthDist(
            kind=self.dist,
            value=self.value or 0,
            low=self.min or 1,
            high=self.max,
            median=self.median or 0.0,
            spread=self.spread or 0.0,
            values=tuple(self.values or ()),
        )


class ArrivalSpec(_Strict):
    process: ArrivalProcess
    rate: float | None = Field(default=None, gt=0)
    burstiness: float = Field(1.0, gt=0)
    burst_size: int = Field(1, ge=1)
    burst_interval: float = Field(1.0, gt=0)
    concurrency: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _fields_for_process(self) -> ArrivalSpec:
        if self.process == "concurrency" and self.concurrency is None:
            raise ValueError("process concurrency needs concurrency (requests in flight)")
        if self.process in ("poisson", "gamma", "constant") and self.rate is None:
            raise ValueError(f"process {self.process} needs rate (requests per second)")
        return self

    def to_arrival(self) -> Arrival:
        return Arrival(
            process=self.process,
            rate=self.rate if self.process != "bursts" else self.burst_size / self.burst_interval,
            burstiness=self.burstiness,
            burst_size=self.burst_size,
            burst_interval_s=self.burst_interval,
            concurrency=self.concurrency,
        )


class SharedPrefixSpec(_Strict):
    fraction: float = Field(ge=0, le=1)
    tokens: int = Field(ge=1)
    groups: int = Field(1, ge=1)


class WarmupSpec(_Strict):
    requests: int = Field(default=0, ge=0)
    seconds: float = Field(default=0.0, ge=0)


class SloSpec(_Strict):
    ttft: float | None = Field(default=None, gt=0, description="seconds")
    tpot: float | None = Field(default=None, gt=0, description="seconds")


def _mix_shorthand(value: Any) -> Any:
    if isinstance(value, list) and all(isinstance(name, str) for name in value):
        return dict.fromkeys(value, 1.0)
    if isinstance(value, dict):
        return value
    raise ValueError(f"expected a mapping {{model: share}} or a list of model names, got {value!r}")


class PhaseSpec(_Strict):
    duration: float = Field(gt=0, description="seconds")
    models: dict[str, float]

    _models_shorthand = field_validator("models", mode="before")(_mix_shorthand)

    @model_validator(mode="after")
    def _shares(self) -> PhaseSpec:
        if any(share < 0 for share in self.models.values()):
            raise ValueError("models: every share must be 0 or more")
        if sum(self.models.values()) <= 0:
            raise ValueError("models: at least one share must be positive")
        return self

    def to_phase(self) -> Phase:
        total = sum(self.models.values())
        return Phase(self.duration, tuple((name, s / total) for name, s in self.models.items()))


class WorkloadSpec(_Strict):
    name: str | None = None
    description: str = ""
    models: dict[str, float] | None = None
    phases: list[PhaseSpec] | None = None
    prompt_tokens: LengthSpec | None = None
    output_tokens: LengthSpec | None = None
    shared_prefix: SharedPrefixSpec | None = None
    arrival: ArrivalSpec | None = None
    duration: float | None = Field(default=None, gt=0, description="seconds")
    requests: int | None = Field(default=None, ge=1)
    warmup: WarmupSpec = WarmupSpec()
    seed: int = 0
    ignore_eos: bool = True
    stream: bool = True
    api: Api = "chat"
    slo: SloSpec = SloSpec()
    timeout: float = Field(300.0, gt=0, description="seconds per request")
    # Classic testbench spellings.
    num_requests: int | None = Field(default=None, ge=1)
    concurrent_requests: int | None = Field(default=None, ge=1)
    arrival_pattern: _Pattern | None = None
    rate_per_second: float | None = Field(default=None, gt=0)
    prompt_tokens_min: int | None = Field(default=None, ge=1)
    prompt_tokens_max: int | None = Field(default=None, ge=1)
    completion_tokens: int | None = Field(default=None, ge=1)
    context_lengths: list[int] | None = None

    _models_shorthand = field_validator("models", mode="before")(_mix_shorthand)

    @field_validator("prompt_tokens", "output_tokens", mode="before")
    @classmethod
    def _length_shorthand(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                raise ValueError(f"must be a positive integer, got {value}")
            return {"dist": "fixed", "value": value}
        if value is None or isinstance(value, dict):
            return value
        raise ValueError(f"expected {_LENGTH_SHAPES}, got {value!r}")

    @field_validator("warmup", mode="before")
    @classmethod
    def _warmup_shorthand(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return {"requests": value}
        if isinstance(value, dict):
            return value
        raise ValueError(
            f"expected an integer (requests) or {{requests: N, seconds: S}}, got {value!r}"
        )

    @model_validator(mode="after")
    def _consistent(self) -> WorkloadSpec:
        pairs = [
            ("requests", "num_requests"),
            ("output_tokens", "completion_tokens"),
            ("arrival", "arrival_pattern"),
            ("arrival", "concurrent_requests"),
            ("arrival", "rate_per_second"),
            ("prompt_tokens", "prompt_tokens_min"),
            ("prompt_tokens", "context_lengths"),
        ]
        for native, classic in pairs:
            if getattr(self, native) is not None and getattr(self, classic) is not None:
                raise ValueError(f"give {native} or {classic}, not both")
        if (self.prompt_tokens_min is None) != (self.prompt_tokens_max is None):
            raise ValueError("prompt_tokens_min and prompt_tokens_max go together")
        if self.context_lengths is not None and self.prompt_tokens_min is not None:
            raise ValueError("give context_lengths or prompt_tokens_min/max, not both")
        if self.models is not None and self.phases is not None:
            raise ValueError(
                "give models (a fixed mix) or phases (a mix that changes over time), not both"
            )
        if self.phases is not None:
            if not self.phases:
                raise ValueError("phases must list at least one phase")
            return self
        if not self.models:
            raise ValueError("models must name at least one model (or give phases)")
        if any(share <= 0 for share in self.models.values()):
            raise ValueError("models: every share must be positive")
        return self

    def to_workload(self, default_name: str) -> Workload:
        return Workload(
            name=self.name or default_name,
            description=self.description,
            models=self._models(),
            prompt_tokens=_length(self._prompt_spec(), "prompt_tokens"),
            output_tokens=_length(self._output_spec(), "output_tokens"),
            arrival=self._arrival(),
            duration_s=self.duration,
            requests=self.requests or self.num_requests,
            shared_prefix=(
                SharedPrefix(**self.shared_prefix.model_dump()) if self.shared_prefix else None
            ),
            warmup=Warmup(self.warmup.requests, self.warmup.seconds),
            seed=self.seed,
            ignore_eos=self.ignore_eos,
            stream=self.stream,
            api=self.api,
            slo=Slo(ttft_s=self.slo.ttft, tpot_s=self.slo.tpot),
            timeout_s=self.timeout,
            phases=tuple(phase.to_phase() for phase in self.phases or ()),
        )

    def _models(self) -> tuple[tuple[str, float], ...]:
        """The mix; with phases, each model's share averaged over a cycle (by duration)."""
        if self.phases is None:
            models = self.models or {}
            total = sum(models.values())
            return tuple((name, share / total) for name, share in models.items())
        phases = [phase.to_phase() for phase in self.phases]
        cycle = sum(phase.duration_s for phase in phases)
        average: dict[str, float] = {}
        for phase in phases:
            for name, share in phase.models:
                average[name] = average.get(name, 0.0) + share * phase.duration_s / cycle
        return tuple((name, share) for name, share in average.items() if share > 0)

    def _prompt_spec(self) -> LengthSpec | None:
        if self.prompt_tokens_min is not None:
            low, high = self.prompt_tokens_min, self.prompt_tokens_max
            return LengthSpec(dist="uniform", min=low, max=high)
        if self.context_lengths is not None:
            return LengthSpec(dist="empirical", values=self.context_lengths)
        return self.prompt_tokens

    def _output_spec(self) -> LengthSpec | None:
        if self.completion_tokens is not None:
            return LengthSpec(dist="fixed", value=self.completion_tokens)
        return self.output_tokens

    def _arrival(self) -> Arrival:
        if self.arrival is not None:
            return self.arrival.to_arrival()
        pattern = {"uniform": "constant", "burst": "bursts"}.get(
            self.arrival_pattern or "", self.arrival_pattern
        )
        if self.rate_per_second is not None or pattern not in (None, "concurrency"):
            if self.rate_per_second is None:
                raise WorkloadError("arrival_pattern needs rate_per_second")
            if pattern == "bursts":
                raise WorkloadError("arrival_pattern bursts: use arrival: {process: bursts, ...}")
            return Arrival(process=pattern or "poisson", rate=self.rate_per_second)  # type: ignore[arg-type]
        if self.concurrent_requests is not None:
            return Arrival(process="concurrency", concurrency=self.concurrent_requests)
        raise WorkloadError(
            "arrival: missing; allowed: arrival: {process: poisson|gamma|constant|bursts|"
            "concurrency, ...}, or rate_per_second / concurrent_requests"
        )


def _length(spec: LengthSpec | None, field: str) -> LengthDist:
    if spec is None:
        raise WorkloadError(f"{field}: missing; allowed: {_LENGTH_SHAPES}")
    return spec.to_dist()


# The models nested under each top-level field, for "unknown field; allowed: ...".
_NESTED: dict[str, type[BaseModel]] = {
    "phases": PhaseSpec,
    "prompt_tokens": LengthSpec,
    "output_tokens": LengthSpec,
    "shared_prefix": SharedPrefixSpec,
    "arrival": ArrivalSpec,
    "warmup": WarmupSpec,
    "slo": SloSpec,
}


def field_paths() -> list[str]:
    """Every field a workload file can set, nested ones as `parent.child`."""
    paths = list(WorkloadSpec.model_fields)
    for parent, model in _NESTED.items():
        paths += [f"{parent}.{child}" for child in model.model_fields]
    return paths


def _describe_errors(errors: list[Any]) -> list[str]:
    lines: set[str] = set()
    for error in errors:
        loc = tuple(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            holder = _NESTED.get(loc[0], WorkloadSpec) if len(loc) > 1 else WorkloadSpec
            message = f"unknown field; allowed: {', '.join(holder.model_fields)}"
        lines.add(f"{'.'.join(loc) or 'workload'}: {message}")
    return sorted(lines)


def parse_workload(data: Any, *, default_name: str, source: str) -> Workload:
    """Validate parsed YAML and build the Workload; raise WorkloadError naming what is wrong."""
    if not isinstance(data, dict):
        raise WorkloadError(f"workload {source}: expected a mapping of fields, got {data!r}")
    try:
        spec = WorkloadSpec.model_validate(data)
        workload = spec.to_workload(default_name)
    except ValidationError as exc:
        problems = "; ".join(_describe_errors(exc.errors()))
        raise WorkloadError(f"workload {source}: {problems}") from None
    except WorkloadError as exc:
        raise WorkloadError(f"workload {source}: {exc}") from None
    # Neither duration nor requests is fine here: the command line may give one
    # (build_schedule says so when neither does).
    return workload


def _builtin_dir() -> Path:
    return Path(str(resources.files("loadtest.workload") / "builtin"))


def builtin_workloads() -> dict[str, str]:
    """Built-in workload names with their one-line description, sorted by name."""
    return {path.stem: load_workload(path).description for path in _builtins()}


def _builtins() -> list[Path]:
    return sorted(_builtin_dir().glob("*.yaml"))


def workload_source(name_or_path: str | Path) -> tuple[Any, Path]:
    """The parsed YAML of a built-in workload by name, or of a YAML file by path, and the
    file it came from (for callers that change fields before parsing it). Raises
    WorkloadError."""
    path = Path(name_or_path)
    builtin = _builtin_dir() / f"{name_or_path}.yaml"
    if not path.is_file() and builtin.is_file():
        path = builtin
    if not path.is_file():
        names = ", ".join(p.stem for p in _builtins())
        raise WorkloadError(
            f"workload {str(name_or_path)!r}: no such file and not a built-in; built-ins: {names}"
        )
    try:
        return yaml.safe_load(path.read_text()), path
    except yaml.YAMLError as exc:
        raise WorkloadError(f"workload {path}: not valid YAML: {exc}") from exc


def load_workload(name_or_path: str | Path) -> Workload:
    """A built-in workload by name, or a YAML file by path. Raises WorkloadError."""
    data, path = workload_source(name_or_path)
    return parse_workload(data, default_name=path.stem, source=str(path))
