"""Profiles composed from tables: a model, a weight format, a GPU, parallelism and an engine.

`compose("llama-3.1-70b-fp8-rtxpro6000")` reads hardware.yaml (GPUs, links, models, weight
formats, KV dtypes) and engines.yaml (each engine's calibrated efficiencies per GPU) and
builds the Profile, every number traceable to the sources those files cite. The name is

    <model>-<weights>[-kv<dtype>]-<gpu>[-tp<N>][-pp<M>][-<engine>]

with the weights defaulting to bf16 and the engine to vllm, so the shipped profiles' names
(`llama-3.1-8b-h100`, `mixtral-8x7b-h100-tp2`) parse too (see `parse`).
"""

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from loadtest.sim.profiles import EngineKind, Profile, UnknownProfile

ENGINES: tuple[EngineKind, ...] = ("vllm", "ollama", "llamacpp")
BF16_BYTES = 2.0
GIB = 1024**3


@dataclass(frozen=True, slots=True)
class Spec:
    """A profile name taken apart."""

    model: str
    weights: str
    kv_dtype: str | None
    gpu: str
    tp: int = 1
    pp: int = 1
    engine: EngineKind = "vllm"

    def name(self) -> str:
        parts = [self.model, self.weights]
        if self.kv_dtype is not None:
            parts.append(f"kv{self.kv_dtype}")
        parts.append(self.gpu)
        if self.tp > 1:
            parts.append(f"tp{self.tp}")
        if self.pp > 1:
            parts.append(f"pp{self.pp}")
        if self.engine != "vllm":
            parts.append(self.engine)
        return "-".join(parts)


@cache
def tables() -> dict[str, Any]:
    """hardware.yaml and engines.yaml, read once per process (they ship with the package)."""
    data: dict[str, Any] = {}
    for name in ("hardware.yaml", "engines.yaml"):
        text = resources.files("loadtest.sim").joinpath(name).read_text("utf-8")
        loaded = yaml.safe_load(text)
        if not isinstance(loaded, dict):
            raise ValueError(f"{name} must be a mapping of tables")
        data.update(_numbers(loaded))
    return data


def _numbers(value: Any) -> Any:
    """YAML 1.1 reads 3.35e12 as a string (its floats need a signed exponent): numbers back."""
    if isinstance(value, dict):
        return {key: _numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_numbers(item) for item in value]
    if isinstance(value, str) and value[:1].isdigit() and "e" in value:
        try:
            return float(value)
        except ValueError:
            return value
    return value


def parse(name: str) -> Spec:
    """The parts of a profile name, or UnknownProfile saying which part is not known."""
    data = tables()
    models = sorted(data["models"], key=len, reverse=True)
    model = next((m for m in models if name.startswith(m + "-")), None)
    if model is None:
        raise UnknownProfile(
            f"unknown profile {name!r}: no model it starts with; models: "
            f"{', '.join(sorted(data['models']))}"
        )
    rest = name[len(model) + 1 :].split("-")
    weights = "bf16"
    if rest and rest[0] in data["weights"]:
        weights = rest.pop(0)
    kv_dtype = None
    if rest and rest[0].startswith("kv") and rest[0][2:] in data["kv_dtypes"]:
        kv_dtype = rest.pop(0)[2:]
    if not rest or rest[0] not in data["gpus"]:
        raise UnknownProfile(
            f"unknown profile {name!r}: expected <model>-<weights>[-kv<dtype>]-<gpu>"
            f"[-tp<N>][-pp<M>][-<engine>]; weights: {', '.join(data['weights'])}; "
            f"gpus: {', '.join(data['gpus'])}"
        )
    gpu = rest.pop(0)
    tp = _degree(rest, "tp", name)
    pp = _degree(rest, "pp", name)
    engine: EngineKind = "vllm"
    if rest and rest[0] in ENGINES:
        engine = rest.pop(0)  # type: ignore[assignment]
    if rest:
        raise UnknownProfile(
            f"unknown profile {name!r}: {'-'.join(rest)!r} is not tp<N>, pp<M> or an engine "
            f"({', '.join(ENGINES)})"
        )
    return Spec(model, weights, kv_dtype, gpu, tp, pp, engine)


def retarget(
    name: str, gpu: str | None = None, weights: str | None = None, kv_dtype: str | None = None
) -> str:
    """The name of profile `name` moved to another GPU, weight format or KV dtype (its model,
    parallelism and engine kept); UnknownProfile if `name` or the result does not parse."""
    spec = parse(name)
    moved = Spec(
        spec.model,
        weights or spec.weights,
        kv_dtype or spec.kv_dtype,
        gpu or spec.gpu,
        spec.tp,
        spec.pp,
        spec.engine,
    ).name()
    parse(moved)
    return moved


def _degree(rest: list[str], prefix: str, name: str) -> int:
    if not rest or not rest[0].startswith(prefix):
        return 1
    digits = rest[0][len(prefix) :]
    if not digits.isdigit() or int(digits) < 1:
        raise UnknownProfile(f"unknown profile {name!r}: {rest[0]!r} needs a positive degree")
    rest.pop(0)
    return int(digits)


def compose(name: str) -> Profile:
    """The profile called `name`, built from the tables; UnknownProfile if a part is unknown
    or the combination cannot run (a format the GPU lacks, weights that do not fit)."""
    spec = parse(name)
    data = tables()
    gpu, model, fmt = (
        data["gpus"][spec.gpu],
        data["models"][spec.model],
        data["weights"][spec.weights],
    )
    engine = data["engines"][spec.engine]
    tuned = engine["gpus"].get(spec.gpu)
    if tuned is None:
        raise UnknownProfile(
            f"{name}: the {spec.engine} engine has no efficiencies for {spec.gpu} in engines.yaml"
        )
    compute = fmt["compute"]
    if compute not in gpu["flops"]:
        raise UnknownProfile(
            f"{name}: {gpu['name']} has no {compute.upper()} tensor cores "
            f"(it has {', '.join(k.upper() for k in gpu['flops'])}); choose another format"
        )
    if spec.engine != "vllm" and (spec.tp > 1 or spec.pp > 1):
        raise UnknownProfile(f"{name}: the {spec.engine} engine is modelled on one GPU only")
    kv_dtype = spec.kv_dtype or engine["kv_dtype"]
    kv_elem = float(data["kv_dtypes"][kv_dtype])
    weight_bytes, streamed, expert_bytes = _weight_bytes(model, fmt)
    gpus = spec.tp * spec.pp
    memory = float(gpu["memory_gib"])
    if weight_bytes / gpus > memory * GIB:
        raise UnknownProfile(
            f"{name}: {weight_bytes / 1e9:.1f} GB of weights need "
            f"{weight_bytes / gpus / GIB:.1f} GiB per GPU; a {spec.gpu} has {memory:g} GiB "
            "(add -tp<N> or -pp<M>, or choose a smaller format)"
        )
    layers, hidden = int(model["layers"]), int(model["hidden"])
    tp_link = _link(data, gpu, spec.tp)
    pp_link = _link(data, gpu, gpus)
    ring = 2.0 * (spec.tp - 1) / spec.tp
    sources = [*gpu["sources"], *model["sources"], *fmt["sources"], *tuned["sources"]]
    for link, used in ((tp_link, spec.tp > 1), (pp_link, spec.pp > 1)):
        if used and link is not None:
            sources += [s for s in link["sources"] if s not in sources]
    return Profile(
        name=name,
        model=model["hf"],
        params_total=float(model["params_total"]),
        params_active=float(model.get("params_active", model["params_total"])),
        weight_bytes=weight_bytes,
        step_weight_bytes=streamed,
        kv_bytes_per_token=2.0 * layers * model["kv_heads"] * model["head_dim"] * kv_elem,
        hbm_bandwidth=float(gpu["bandwidth"]),
        hbm_efficiency=tuned["hbm_efficiency"] * model.get("hbm_efficiency_scale", 1.0),
        flops=float(gpu["flops"][compute]),
        flops_efficiency=_flops_efficiency(tuned, compute)
        * model.get("flops_efficiency_scale", 1.0),
        tensor_parallel=spec.tp,
        # Two all-reduces a layer (after attention and after the MLP), each a small message.
        allreduce_seconds=2 * layers * tp_link["latency"] if tp_link and spec.tp > 1 else 0.0,
        allreduce_bytes_per_token=2 * layers * hidden * BF16_BYTES * ring,
        allreduce_bandwidth=float(tp_link["bandwidth"]) if tp_link and spec.tp > 1 else 0.0,
        pipeline_parallel=spec.pp,
        pp_latency=float(pp_link["latency"]) if pp_link and spec.pp > 1 else 0.0,
        pp_bytes_per_token=hidden * BF16_BYTES,
        pp_bandwidth=float(pp_link["bandwidth"]) if pp_link and spec.pp > 1 else 0.0,
        step_overhead_seconds=float(tuned["step_overhead"]),
        max_model_len=int(model["max_model_len"]),
        gpu_memory_gib=memory,
        reserved_gib=float(engine["reserved_gib"]),
        elastic_full_batch_overhead=float(engine.get("elastic_full_batch_overhead", 0.0)),
        attention_flops_per_pair=4.0 * layers * model["heads"] * model["head_dim"],
        expert_weight_bytes=expert_bytes,
        num_experts=int(model.get("num_experts", 0)),
        experts_per_token=int(model.get("experts_per_token", 0)),
        engine=spec.engine,
        slot_context=int(engine.get("slot_context", 0)),
        batch_tokens=int(engine.get("batch_tokens", 0)),
        gpu=spec.gpu,
        weights=spec.weights,
        kv_dtype=kv_dtype,
        sources=tuple(sources),
        notes=f"composed: {model['hf']} in {spec.weights} on {gpus}x {gpu['name']} "
        f"({spec.engine}, KV {kv_dtype})",
    )


def _weight_bytes(model: dict[str, Any], fmt: dict[str, Any]) -> tuple[float, float, float]:
    """(footprint, bytes a step streams, expert bytes): the input embedding is gathered a row
    a token, not streamed, unless it is tied to the lm_head (then read in full as the head)."""
    total = float(model["params_total"])
    embedding = float(model["embedding"])
    tied = bool(model["tied"])
    table_params = embedding if tied else 2 * embedding
    bits, table_bits = float(fmt["bits"]), float(fmt["embedding_bits"])
    footprint = ((total - table_params) * bits + table_params * table_bits) / 8
    streamed = footprint if tied else footprint - embedding * table_bits / 8
    experts = float(model.get("expert_params", 0.0)) * bits / 8
    return footprint, streamed, experts


def _flops_efficiency(tuned: dict[str, Any], compute: str) -> float:
    value = tuned["flops_efficiency"]
    return float(value[compute] if isinstance(value, dict) else value)


def _link(data: dict[str, Any], gpu: dict[str, Any], span: int) -> dict[str, Any] | None:
    """The path between GPUs a group of `span` spans: the node's link within a node, its
    network across nodes."""
    key = gpu["link"] if span <= int(gpu["gpus_per_node"]) else gpu["network"]
    return None if key == "none" else data["links"][key]
