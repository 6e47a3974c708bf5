"""The workload YAML format, validated with pydantic and turned into `Workload`.

Errors name the field and what is allowed. The classic testbench fields (num_requests,
concurrent_requests, arrival_pattern, rate_per_second, prompt_tokens_min/max, completion_tokens,
context_lengths) are accepted and mapped to the native ones; giving both spellings of one thing
is an error.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from loadtest.workload import (
    Arrival,
    LengthDist,
    SharedPrefix,
    Slo,
    Warmup,
    Workload,
    WorkloadError,
)

_Pattern = Literal["poisson", "constant", "uniform", "gamma", "bursts", "burst"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LengthSpec(_Strict):
    dist: Literal["fixed", "uniform", "lognormal", "empirical"]
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
    process: Literal["poisson", "gamma", "constant", "bursts", "concurrency"]
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
    requests: int = Field(0, ge=0)
    seconds: float = Field(0.0, ge=0)


class SloSpec(_Strict):
    ttft: float | None = Field(default=None, gt=0, description="seconds")
    tpot: float | None = Field(default=None, gt=0, description="seconds")


class WorkloadSpec(_Strict):
    name: str | None = None
    description: str = ""
    models: dict[str, float] | list[str]
    prompt_tokens: LengthSpec | int | None = None
    output_tokens: LengthSpec | int | None = None
    shared_prefix: SharedPrefixSpec | None = None
    arrival: ArrivalSpec | None = None
    duration: float | None = Field(default=None, gt=0, description="seconds")
    requests: int | None = Field(default=None, ge=1)
    warmup: WarmupSpec | int = 0
    seed: int = 0
    ignore_eos: bool = True
    stream: bool = True
    api: Literal["chat", "completions"] = "chat"
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
        if not self.models:
            raise ValueError("models must name at least one model")
        if isinstance(self.models, dict) and any(share <= 0 for share in self.models.values()):
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
            warmup=(
                Warmup(requests=self.warmup)
                if isinstance(self.warmup, int)
                else Warmup(self.warmup.requests, self.warmup.seconds)
            ),
            seed=self.seed,
            ignore_eos=self.ignore_eos,
            stream=self.stream,
            api=self.api,
            slo=Slo(ttft_s=self.slo.ttft, tpot_s=self.slo.tpot),
            timeout_s=self.timeout,
        )

    def _models(self) -> tuple[tuple[str, float], ...]:
        shares = self.models if isinstance(self.models, dict) else dict.fromkeys(self.models, 1.0)
        total = sum(shares.values())
        return tuple((name, share / total) for name, share in shares.items())

    def _prompt_spec(self) -> LengthSpec | int | None:
        if self.prompt_tokens_min is not None:
            low, high = self.prompt_tokens_min, self.prompt_tokens_max
            return LengthSpec(dist="uniform", min=low, max=high)
        if self.context_lengths is not None:
            return LengthSpec(dist="empirical", values=self.context_lengths)
        return self.prompt_tokens

    def _output_spec(self) -> LengthSpec | int | None:
        return self.completion_tokens or self.output_tokens

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


def _length(spec: LengthSpec | int | None, field: str) -> LengthDist:
    if spec is None:
        raise WorkloadError(
            f"{field}: missing; allowed: an integer, or {{dist: fixed|uniform|lognormal|"
            "empirical, ...}"
        )
    if isinstance(spec, int):
        if spec < 1:
            raise WorkloadError(f"{field}: must be a positive integer, got {spec}")
        return LengthDist(kind="fixed", value=spec)
    return spec.to_dist()


# Fields that take one of two shapes: what to say when the value fits neither.
_EITHER = {
    "models": "a mapping {model: share} or a list of model names",
    "prompt_tokens": "an integer or {dist: fixed|uniform|lognormal|empirical, ...}",
    "output_tokens": "an integer or {dist: fixed|uniform|lognormal|empirical, ...}",
    "warmup": "an integer (requests) or {requests: N, seconds: S}",
}
_BRANCHES = {"LengthSpec", "WarmupSpec", "int", "dict[str,float]", "list[str]"}


def _allowed_fields(loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model that holds the field at `loc`."""
    model: type[BaseModel] = WorkloadSpec
    for part in loc[:-1]:
        info = model.model_fields.get(str(part))
        if info is None:
            break
        nested = [
            arg
            for arg in (*getattr(info.annotation, "__args__", ()), info.annotation)
            if isinstance(arg, type) and issubclass(arg, BaseModel)
        ]
        if not nested:
            break
        model = nested[0]
    return list(model.model_fields)


def _branch(part: Any) -> str:
    """The union member a loc part names ('function-after[check(), LengthSpec]' -> LengthSpec)."""
    text = str(part)
    if text.startswith("function-"):
        return text.rsplit(", ", 1)[-1].rstrip("]")
    return text


def _describe_errors(errors: list[Any], data: dict[str, Any]) -> list[str]:
    lines: set[str] = set()
    for error in errors:
        loc = tuple(error["loc"])
        top = str(loc[0]) if loc else ""
        if top in _EITHER and len(loc) > 1 and _branch(loc[1]) in _BRANCHES:
            value = data.get(top)
            if isinstance(value, dict):
                wanted = {"LengthSpec", "WarmupSpec", "dict[str,float]"}
            elif isinstance(value, list):
                wanted = {"list[str]"}
            else:
                lines.add(f"{top}: expected {_EITHER[top]}, got {value!r}")
                continue
            if _branch(loc[1]) not in wanted:
                continue
            loc = (loc[0], *loc[2:])
        loc = tuple(part for part in loc if not str(part).startswith("function-"))
        where = ".".join(str(part) for part in loc) or "workload"
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = f"unknown field; allowed: {', '.join(_allowed_fields(loc))}"
        lines.add(f"{where}: {message}")
    return sorted(lines)


def parse_workload(data: Any, *, default_name: str, source: str) -> Workload:
    """Validate parsed YAML and build the Workload; raise WorkloadError naming what is wrong."""
    if not isinstance(data, dict):
        raise WorkloadError(f"workload {source}: expected a mapping of fields, got {data!r}")
    try:
        spec = WorkloadSpec.model_validate(data)
        workload = spec.to_workload(default_name)
    except ValidationError as exc:
        lines = _describe_errors(exc.errors(), data)
        raise WorkloadError(f"workload {source}: " + "; ".join(lines)) from None
    except WorkloadError as exc:
        raise WorkloadError(f"workload {source}: {exc}") from None
    if workload.duration_s is None and workload.requests is None:
        raise WorkloadError(f"workload {source}: give duration (seconds) or requests (a count)")
    return workload
