"""The fleets' layouts and deployments, defined once for the HTTP fleet and virtual time.

Layouts, on one node of eight H100 80 GB GPUs:
- reference: six replicas of three models, one model per GPU (group): Llama-3.1-8B on GPUs
  0 and 1, Qwen2.5-7B on 2 and 3, Mixtral-8x7B with tensor parallel 2 on 4-5 and 6-7.
- colocated: two models on each GPU, as KVCached is built for: Llama-3.1-8B and Qwen2.5-7B
  side by side on each of GPUs 0 to 3 (eight engines; GPUs 4 to 7 left out).

A deployment puts a layout on its GPUs one way:
- baseline: stock vLLM, a static KV cache per replica, prefix caching on;
- baseline-noprefix: as baseline, prefix caching off (a link of the attribution chain
  from baseline to managed: `loadtest compare baseline managed --explain`);
- managed: KVCached vLLM, an elastic KV pool per replica's GPU(s), prefix caching off;
- managed-prefix: as managed, with prefix caching on, keeping at most
  KVCACHED_MAX_CACHED_TOKENS (KVCached's default, 16,000) tokens of freed
  prefixes per replica;
- colocated-static: each engine reserves an equal share of its GPU's memory (the
  fleet's share over the engines on the GPU, as vLLM's --gpu-memory-utilization does),
  prefix caching off;
- colocated-elastic: one KVCached pool per GPU across the engines on it, prefix caching off.
Engines on one GPU also share its time (loadtest.sim.gpus).
"""

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

from loadtest.sim.kvcache import KVCACHED_MAX_CACHED_TOKENS
from loadtest.sim.profiles import DEFAULT_GPU_MEMORY_UTILIZATION, UnknownProfile, load_profile

KVMode = Literal["static", "elastic"]


@dataclass(frozen=True, slots=True)
class Seat:
    """Where one replica of a layout runs: its model, engine profile and GPUs."""

    model: str
    profile: str
    gpus: str


@dataclass(frozen=True, slots=True)
class Deployment:
    """Which layout a fleet uses and how its engines manage their KV cache."""

    kv_mode: KVMode
    prefix_caching: bool
    max_cached_tokens: int = KVCACHED_MAX_CACHED_TOKENS  # elastic: KVCACHED_MAX_CACHED_TOKENS
    layout: str = "reference"

    @property
    def elastic(self) -> bool:
        return self.kv_mode == "elastic"


@dataclass(frozen=True, slots=True)
class Placement:
    """One engine of a deployed layout: its seat, its memory share (vLLM's
    --gpu-memory-utilization), its elastic pool, and the GPU it shares (None: alone)."""

    seat: Seat
    memory_share: float
    kv_pool: str | None
    gpu: str | None


LLAMA = ("meta-llama/Llama-3.1-8B-Instruct", "llama-3.1-8b-h100")
QWEN = ("Qwen/Qwen2.5-7B-Instruct", "qwen2.5-7b-h100")
MIXTRAL = ("mistralai/Mixtral-8x7B-Instruct-v0.1", "mixtral-8x7b-h100-tp2")

REFERENCE: tuple[Seat, ...] = (
    Seat(*LLAMA, "gpu0"),
    Seat(*LLAMA, "gpu1"),
    Seat(*QWEN, "gpu2"),
    Seat(*QWEN, "gpu3"),
    Seat(*MIXTRAL, "gpu4-5"),
    Seat(*MIXTRAL, "gpu6-7"),
)
COLOCATED: tuple[Seat, ...] = tuple(
    Seat(*model, f"gpu{gpu}") for gpu in range(4) for model in (LLAMA, QWEN)
)
LAYOUTS: dict[str, tuple[Seat, ...]] = {"reference": REFERENCE, "colocated": COLOCATED}

DEPLOYMENTS: dict[str, Deployment] = {
    "baseline": Deployment(kv_mode="static", prefix_caching=True),
    "baseline-noprefix": Deployment(kv_mode="static", prefix_caching=False),
    "managed": Deployment(kv_mode="elastic", prefix_caching=False),
    "managed-prefix": Deployment(kv_mode="elastic", prefix_caching=True),
    "colocated-static": Deployment(kv_mode="static", prefix_caching=False, layout="colocated"),
    "colocated-elastic": Deployment(kv_mode="elastic", prefix_caching=False, layout="colocated"),
}
FLEETS: tuple[str, ...] = tuple(DEPLOYMENTS)


def deployment(name: str) -> Deployment:
    """The deployment called `name`, or ValueError listing the known ones."""
    try:
        return DEPLOYMENTS[name]
    except KeyError:
        raise ValueError(f"unknown fleet {name!r}; available: {', '.join(FLEETS)}") from None


def seats(fleet: str, remap: Mapping[str, str] | None = None) -> tuple[Seat, ...]:
    """The seats of fleet `fleet`'s layout, in replica order, each seat's profile replaced by
    `remap[profile]` when given."""
    layout = LAYOUTS[deployment(fleet).layout]
    if not remap:
        return layout
    return tuple(replace(seat, profile=remap.get(seat.profile, seat.profile)) for seat in layout)


def placements(
    fleet: str,
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION,
    remap: Mapping[str, str] | None = None,
) -> list[Placement]:
    """Each engine of fleet `fleet`: `gpu_memory_utilization` is the share of each GPU the
    fleet may use, split evenly over the engines on it; elastic engines pool their shares
    per GPU (group)."""
    deployed = deployment(fleet)
    layout = seats(fleet, remap)
    residents = Counter(seat.gpus for seat in layout)
    return [
        Placement(
            seat,
            gpu_memory_utilization / residents[seat.gpus],
            seat.gpus if deployed.elastic else None,
            seat.gpus if residents[seat.gpus] > 1 else None,
        )
        for seat in layout
    ]


def on_hardware(
    gpu: str | None = None,
    weights: str | None = None,
    kv_dtype: str | None = None,
    profiles: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The remap that runs the reference layout on other hardware: each seat's profile moved
    to `gpu` / `weights` / `kv_dtype` (loadtest.sim.hardware.retarget), or given outright in
    `profiles` (old name -> new). Every result is loaded to check it can run; ValueError
    naming the seat's profile and why not."""
    from loadtest.sim.hardware import retarget

    explicit = dict(profiles or {})
    unknown = sorted(set(explicit) - {seat.profile for seat in REFERENCE})
    if unknown:
        known = ", ".join(sorted({seat.profile for seat in REFERENCE}))
        raise ValueError(f"profiles: {unknown[0]!r} is not a profile of the layout ({known})")
    remap: dict[str, str] = {}
    for seat in REFERENCE:
        old = seat.profile
        try:
            new = explicit.get(old) or (
                retarget(old, gpu, weights, kv_dtype) if gpu or weights or kv_dtype else old
            )
            load_profile(new)
        except UnknownProfile as exc:
            raise ValueError(f"the layout's {old}: {exc}") from None
        if new != old:
            remap[old] = new
    return remap
