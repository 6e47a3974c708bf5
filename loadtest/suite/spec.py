"""The suite YAML format, validated with pydantic at the edge and built into `Suite`.

A file with a top-level `benchmark` or `requests` is a classic testbench file and is read by
`loadtest.suite.testbench` first. Every error names the field and what is allowed, and every
point of the sweep is built once before anything runs, so a value that makes no workload is
refused before the first request.
"""

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from loadtest.suite.apply import sweepable
from loadtest.suite.conditions import Conditions
from loadtest.suite.model import Suite, SuiteError, Telemetry
from loadtest.sweep.plans import Search
from loadtest.sweep.points import Axis, SweepError, span
from loadtest.workload.format import workload_source
from loadtest.workload.model import WorkloadError

_INTEGER_FIELDS = ("concurrency", "requests", "concurrent_requests", "num_requests")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class RangeSpec(_Strict):
    start: float = Field(alias="from")
    to: float
    points: int | None = Field(default=None, ge=2)
    step: float | None = Field(default=None, gt=0)
    factor: float | None = Field(default=None, gt=1)
    spacing: Literal["linear", "log"] = "linear"

    @model_validator(mode="after")
    def _one_way(self) -> "RangeSpec":
        if sum(x is not None for x in (self.points, self.step, self.factor)) != 1:
            raise ValueError("a range takes exactly one of points, step or factor")
        return self


class ConditionsSpec(_Strict):
    error_rate: float | None = Field(default=None, ge=0, le=1)
    ttft_p99: float | None = Field(default=None, gt=0, description="seconds")
    goodput_drop: float | None = Field(default=None, gt=0, lt=1)
    served_ratio: float | None = Field(default=None, gt=0, le=1)
    goodput_fraction: float | None = Field(default=None, gt=0, le=1)

    def build(self) -> Conditions:
        return Conditions(**self.model_dump())


class SearchSpec(_Strict):
    field: Literal["rate", "concurrency"]
    start: float | None = Field(default=None, gt=0)
    max: float | None = Field(default=None, gt=0)
    precision: float = Field(default=0.05, gt=0, lt=1)
    max_points: int = Field(default=12, ge=2)
    meets: ConditionsSpec

    @model_validator(mode="after")
    def _something_to_meet(self) -> "SearchSpec":
        if not self.meets.build().given():
            raise ValueError(
                "meets: give at least one of error_rate, ttft_p99, goodput_drop, "
                "served_ratio, goodput_fraction"
            )
        return self

    def build(self) -> Search:
        whole = self.field == "concurrency"
        start = self.start or 1.0
        limit = self.max or (1024.0 if whole else 10_000.0)
        if limit < start:
            raise ValueError(f"max {limit:g} is below start {start:g}")
        floor = 1.0 if whole else start / 16
        return Search(self.field, start, limit, whole, self.precision, self.max_points, floor)


class TelemetrySpec(_Strict):
    gpu: bool = True
    replicas: bool = True
    interval: float = Field(default=0.5, gt=0, description="seconds")


class WarmupSpec(_Strict):
    requests: int = Field(default=0, ge=0)
    seconds: float = Field(default=0.0, ge=0)


class SuiteSpec(_Strict):
    name: str | None = None
    description: str = ""
    targets: list[str] = Field(default_factory=list)
    environments: str | None = None
    workload: str | dict[str, Any]
    time_scale: float | None = Field(default=None, gt=0)
    # Checked in _axes, so that its errors name sweep.FIELD plainly.
    sweep: dict[str, Any] = Field(default_factory=dict)
    combine: Literal["cross", "zip"] = "cross"
    search: SearchSpec | None = None
    warmup: WarmupSpec | None = None
    cooldown: float = Field(default=0.0, ge=0, description="seconds")
    stop_when: ConditionsSpec | None = None
    telemetry: TelemetrySpec = TelemetrySpec()
    metadata: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = None

    @field_validator("targets", mode="before")
    @classmethod
    def _one_target(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("warmup", mode="before")
    @classmethod
    def _warmup_shorthand(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return {"seconds": value}
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "SuiteSpec":
        if self.search is not None and self.search.field in self.sweep:
            raise ValueError(f"search.field {self.search.field} is also swept: drop one")
        if self.search is not None and self.stop_when is not None:
            raise ValueError("stop_when ends a sweep's lines; a search has meets: give one")
        return self


def _integer(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    whole = ("groups", "burst_size", "requests", "value", "min", "max", "values")
    return name in _INTEGER_FIELDS or "tokens" in name or name == "context_length" or last in whole


def _axes(sweep: dict[str, Any]) -> tuple[Axis, ...]:
    allowed = sweepable()
    axes = []
    for name, values in sweep.items():
        if name not in allowed:
            raise SuiteError(f"sweep.{name}: unknown workload field; allowed: {', '.join(allowed)}")
        if isinstance(values, list):
            if not values:
                raise SuiteError(f"sweep.{name}: give at least one value")
            axes.append(Axis(name, tuple(values)))
            continue
        if not isinstance(values, dict):
            raise SuiteError(
                f"sweep.{name}: expected a list of values or a range "
                f"{{from, to, points|step|factor}}, got {values!r}"
            )
        try:
            r = RangeSpec.model_validate(values)
            found = span(
                r.start,
                r.to,
                points=r.points,
                step=r.step,
                factor=r.factor,
                log=r.spacing == "log",
                integer=_integer(name),
            )
        except ValidationError as exc:
            raise SuiteError(describe_errors(exc, {"": RangeSpec}, f"sweep.{name}")) from None
        except SweepError as exc:
            raise SuiteError(f"sweep.{name}: {exc}") from None
        axes.append(Axis(name, found))
    return tuple(axes)


def describe_errors(
    exc: ValidationError, holders: dict[str, type[BaseModel]], prefix: str = ""
) -> str:
    """pydantic's errors as `field: message`; unknown fields list the allowed ones."""
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            holder = holders.get(".".join(loc[:-1]), SuiteSpec)
            allowed = [f.alias or name for name, f in holder.model_fields.items()]
            message = f"unknown field; allowed: {', '.join(allowed)}"
        where = ".".join(part for part in (prefix, *loc) if part)
        lines.append(f"{where}: {message}" if where else message)
    return "; ".join(dict.fromkeys(lines))


_HOLDERS: dict[str, type[BaseModel]] = {
    "search": SearchSpec,
    "search.meets": ConditionsSpec,
    "stop_when": ConditionsSpec,
    "telemetry": TelemetrySpec,
    "warmup": WarmupSpec,
}


def parse_suite(
    data: Any,
    *,
    source: str,
    default_name: str,
    base_dir: Path | None = None,
    metadata: dict[str, Any] | None = None,
    notes: tuple[str, ...] = (),
) -> Suite:
    """Validate a suite mapping and build the Suite; SuiteError naming what is wrong."""
    if not isinstance(data, dict):
        raise SuiteError(f"suite {source}: expected a mapping of fields, got {data!r}")
    try:
        spec = SuiteSpec.model_validate(data)
        search = spec.search.build() if spec.search is not None else None
    except ValidationError as exc:
        raise SuiteError(f"suite {source}: {describe_errors(exc, _HOLDERS)}") from None
    except ValueError as exc:
        raise SuiteError(f"suite {source}: search: {exc}") from None
    try:
        mapping, workload_name = _workload(spec.workload, base_dir)
        axes = _axes(spec.sweep)
        suite = Suite(
            name=spec.name or default_name,
            source=source,
            targets=tuple(spec.targets),
            workload=mapping,
            workload_name=workload_name,
            description=spec.description,
            axes=axes,
            combine=spec.combine,
            search=search,
            meets=spec.search.meets.build() if spec.search is not None else None,
            stop_when=spec.stop_when.build() if spec.stop_when is not None else None,
            warmup=spec.warmup.model_dump() if spec.warmup is not None else None,
            cooldown_s=spec.cooldown,
            time_scale=spec.time_scale,
            environments_file=_path(spec.environments, base_dir),
            telemetry=Telemetry(
                spec.telemetry.gpu, spec.telemetry.replicas, spec.telemetry.interval
            ),
            metadata={**spec.metadata, **(metadata or {})},
            notes=notes,
            seed=spec.seed,
        )
        # Build every point once now: a bad value stops the suite before anything is sent.
        for point in suite.points():
            if search is not None:
                point = point.extended(
                    search.field, int(search.start) if search.integer else search.start
                )
            suite.workload_at(point)
    except (WorkloadError, SweepError, SuiteError) as exc:
        raise SuiteError(f"suite {source}: {exc}") from None
    return suite


def _path(value: str | None, base_dir: Path | None) -> Path | None:
    if value is None:
        return None
    path = Path(value)
    if not path.is_absolute() and base_dir is not None and (base_dir / path).exists():
        return base_dir / path
    return path


def _workload(value: str | dict[str, Any], base_dir: Path | None) -> tuple[dict[str, Any], str]:
    """The workload's mapping and name: inline, a file (beside the suite first) or a built-in."""
    if isinstance(value, dict):
        return value, str(value.get("name") or "inline")
    candidate = _path(value, base_dir)
    data, path = workload_source(candidate if candidate is not None else value)
    if not isinstance(data, dict):
        raise WorkloadError(f"workload {path}: expected a mapping of fields, got {data!r}")
    return data, str(data.get("name") or path.stem)


def _builtin_dir() -> Path:
    return Path(str(resources.files("loadtest.suite") / "builtin"))


def builtin_suites() -> dict[str, str]:
    """Built-in suite names with their one-line description."""
    return {
        path.stem: load_suite(path).description for path in sorted(_builtin_dir().glob("*.yaml"))
    }


def load_suite(name_or_path: str | Path) -> Suite:
    """A built-in suite by name, or a YAML file by path (native or testbench). SuiteError."""
    from loadtest.suite.testbench import is_testbench, translate

    path = Path(name_or_path)
    builtin = _builtin_dir() / f"{name_or_path}.yaml"
    if not path.is_file() and builtin.is_file():
        path = builtin
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in _builtin_dir().glob("*.yaml")))
        raise SuiteError(
            f"suite {str(name_or_path)!r}: no such file and not a built-in; built-ins: {names}"
        )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SuiteError(f"suite {path}: not valid YAML: {exc}") from None
    source, base = str(path), path.parent
    if is_testbench(data):
        native, metadata, notes = translate(data, source)
        return parse_suite(
            native,
            source=source,
            default_name=path.stem,
            base_dir=base,
            metadata=metadata,
            notes=notes,
        )
    return parse_suite(data, source=source, default_name=path.stem, base_dir=base)
