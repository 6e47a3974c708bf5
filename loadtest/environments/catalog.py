"""Named environments for `loadtest compare`: a running deployment's URL, or a local fleet.

The project ships `shipped.yaml` beside this module; a user's file (given explicitly,
or ./turnout-environments.yaml) adds entries and replaces those of the same name.
"""

from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from loadtest.sim.layout import FLEETS, on_hardware
from loadtest.workload.counting import TokenizerChoice

USER_FILE = "turnout-environments.yaml"


class EnvironmentsError(ValueError):
    """An environments file or name that cannot be used; the message says why."""


@dataclass(frozen=True)
class LocalReplica:
    """One `vllm-sim serve` replica of a local fleet."""

    model: str
    profile: str
    args: tuple[str, ...] = ()
    # The name clients use for `model` (the gateway's alias for it), when they differ:
    # Ollama's tag for a Hugging Face model, for one.
    alias: str | None = None


@dataclass(frozen=True)
class Environment:
    """Where requests go: `url` (already running) or a local fleet behind a gateway."""

    name: str
    description: str = ""
    url: str | None = None
    fleet: str | None = None
    replicas: tuple[LocalReplica, ...] = ()
    strategy: str = "round_robin"
    time_scale: float | None = None
    gateway_env: dict[str, str] = field(default_factory=dict)
    # Share of GPU memory each simulated replica gets (vLLM's --gpu-memory-utilization);
    # None: vLLM's default 0.9, the same for every fleet.
    gpu_memory_utilization: float | None = None
    # The served models' tokenizer (a directory or a cached model name), or one per model.
    tokenizer: str | dict[str, str] | None = None
    # A named fleet on other hardware: the layout's profiles, old name -> new (resolved from
    # `gpu`, `precision`, `kv_dtype` and `profiles` in the file; empty: the reference H100s).
    profiles: dict[str, str] = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        return self.url is None

    def with_time_scale(self, default: float) -> "Environment":
        """This environment with `default` as its time scale unless it names its own."""
        if not self.is_local or self.time_scale is not None:
            return self
        return replace(self, time_scale=default)

    def describe(self) -> str:
        if self.url is not None:
            return f"{self.name}: {self.url}"
        fleet = self.fleet or f"{len(self.replicas)} replicas"
        if self.profiles:
            fleet += f" on {', '.join(sorted(set(self.profiles.values())))}"
        scale = f", time scale {self.time_scale:g}" if self.time_scale is not None else ""
        return f"{self.name}: fleet {fleet} + gateway {self.strategy}{scale}"


class _ReplicaModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    profile: str = "tiny"
    args: list[str] = Field(default_factory=list)
    alias: str | None = None


class _EnvironmentModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = ""
    url: str | None = None
    fleet: str | None = None
    replicas: list[_ReplicaModel] | None = None
    strategy: str = "round_robin"
    time_scale: float | None = Field(None, gt=0)
    gateway_env: dict[str, str] = Field(default_factory=dict)
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    tokenizer: str | dict[str, str] | None = None
    # A named fleet on other hardware (loadtest.sim.layout.on_hardware).
    gpu: str | None = None
    precision: str | None = None
    kv_dtype: str | None = None
    profiles: dict[str, str] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> "_EnvironmentModel":
        kinds = [k for k in ("url", "fleet", "replicas") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("give exactly one of url, fleet or replicas")
        if self.fleet is not None and self.fleet not in FLEETS:
            raise ValueError(f"fleet must be one of {', '.join(FLEETS)}")
        moved = [k for k in ("gpu", "precision", "kv_dtype", "profiles") if getattr(self, k)]
        if moved and self.fleet is None:
            raise ValueError(
                f"{moved[0]} applies to a named fleet (fleet: baseline ...); replicas name "
                "their own profile"
            )
        if self.replicas is not None and not self.replicas:
            raise ValueError("replicas must list at least one replica")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return self


def _parse(text: str, source: str) -> dict[str, Environment]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise EnvironmentsError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("environments"), dict):
        raise EnvironmentsError(f"{source}: expected a mapping `environments: {{name: ...}}`")
    parsed: dict[str, Environment] = {}
    for name, body in data["environments"].items():
        try:
            spec = _EnvironmentModel.model_validate(body or {})
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'entry'}: {err['msg']}"
                for err in exc.errors()
            )
            raise EnvironmentsError(f"{source}: environment {name!r}: {problems}") from None
        parsed[str(name)] = _build(str(name), spec)
    return parsed


def _build(name: str, spec: _EnvironmentModel) -> Environment:
    profiles: dict[str, str] = {}
    if spec.fleet is not None:
        try:
            profiles = on_hardware(spec.gpu, spec.precision, spec.kv_dtype, spec.profiles)
        except ValueError as exc:
            raise EnvironmentsError(f"environment {name!r}: {exc}") from None
    replicas = tuple(
        LocalReplica(model=r.model, profile=r.profile, args=tuple(r.args), alias=r.alias)
        for r in spec.replicas or ()
    )
    return Environment(
        name=name,
        description=spec.description,
        url=spec.url.rstrip("/") if spec.url else None,
        fleet=spec.fleet,
        replicas=replicas,
        strategy=spec.strategy,
        time_scale=spec.time_scale,
        gateway_env=dict(spec.gateway_env),
        gpu_memory_utilization=spec.gpu_memory_utilization,
        tokenizer=spec.tokenizer,
        profiles=profiles,
    )


def shipped_environments() -> dict[str, Environment]:
    text = resources.files("loadtest.environments").joinpath("shipped.yaml").read_text()
    return _parse(text, "loadtest/environments/shipped.yaml")


def load_environments(
    user_file: Path | None = None, *, cwd: Path | None = None
) -> dict[str, Environment]:
    """The shipped environments, extended and overridden by the user's file.

    `user_file` must exist when given; otherwise ./turnout-environments.yaml is read
    when present.
    """
    environments = shipped_environments()
    if user_file is None:
        candidate = (cwd or Path.cwd()) / USER_FILE
        user_file = candidate if candidate.is_file() else None
    elif not user_file.is_file():
        raise EnvironmentsError(f"environments file not found: {user_file}")
    if user_file is not None:
        environments.update(_parse(user_file.read_text(), str(user_file)))
    return environments


def resolve(environments: dict[str, Environment], name: str) -> Environment:
    """The environment called `name`, or an error that lists the known names."""
    try:
        return environments[name]
    except KeyError:
        known = ", ".join(sorted(environments))
        raise EnvironmentsError(f"unknown environment {name!r}; known: {known}") from None


def common_tokenizer(
    given: TokenizerChoice, a: Environment, b: Environment, models: list[str]
) -> TokenizerChoice:
    """--tokenizer where it names one, else what the environments name. One schedule serves
    both sides, so A and B must not name different tokenizers for one model."""
    of_a, of_b = TokenizerChoice.of(a.tokenizer), TokenizerChoice.of(b.tokenizer)
    for model in models:
        if given.name_for(model) is not None:
            continue
        name_a, name_b = of_a.name_for(model), of_b.name_for(model)
        if name_a and name_b and name_a != name_b:
            raise EnvironmentsError(
                f"environments {a.name} and {b.name} name different tokenizers for {model} "
                f"({name_a}, {name_b}); one schedule serves both: give --tokenizer"
            )
    return given.or_else(of_a.or_else(of_b))


def as_dict(env: Environment) -> dict[str, Any]:
    """A JSON-ready description (for compare.json)."""
    return {
        "name": env.name,
        "description": env.description,
        "url": env.url,
        "fleet": env.fleet,
        "replicas": [r.__dict__ | {"args": list(r.args)} for r in env.replicas],
        "strategy": env.strategy,
        "time_scale": env.time_scale,
        "gpu_memory_utilization": env.gpu_memory_utilization,
        "tokenizer": env.tokenizer,
        "profiles": dict(env.profiles),
    }
