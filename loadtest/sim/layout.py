"""The reference fleet, defined once for the HTTP fleet and the virtual-time runner.

Six replicas of three models on one node of eight H100 80 GB GPUs: Llama-3.1-8B on GPUs 0
and 1, Qwen2.5-7B on 2 and 3, Mixtral-8x7B with tensor parallel 2 on 4-5 and 6-7. A fleet
deploys that layout one way:
- baseline: stock vLLM, a static KV cache per replica, prefix caching on;
- managed: KVCached vLLM, an elastic KV pool per replica's GPU(s), prefix caching off;
- managed-prefix: as managed, with prefix caching on, keeping at most
  KVCACHED_MAX_CACHED_TOKENS (KVCached's default, 16,000) tokens of freed
  prefixes per replica.
"""

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

from loadtest.sim.kvcache import KVCACHED_MAX_CACHED_TOKENS
from loadtest.sim.profiles import UnknownProfile, load_profile

KVMode = Literal["static", "elastic"]


@dataclass(frozen=True, slots=True)
class Seat:
    """Where one replica of the layout runs: its model, engine profile and GPUs."""

    model: str
    profile: str
    gpus: str


@dataclass(frozen=True, slots=True)
class Deployment:
    """How a fleet's engines manage their KV cache."""

    kv_mode: KVMode
    prefix_caching: bool
    max_cached_tokens: int = KVCACHED_MAX_CACHED_TOKENS  # elastic: KVCACHED_MAX_CACHED_TOKENS

    @property
    def elastic(self) -> bool:
        return self.kv_mode == "elastic"


REFERENCE: tuple[Seat, ...] = (
    Seat("meta-llama/Llama-3.1-8B-Instruct", "llama-3.1-8b-h100", "gpu0"),
    Seat("meta-llama/Llama-3.1-8B-Instruct", "llama-3.1-8b-h100", "gpu1"),
    Seat("Qwen/Qwen2.5-7B-Instruct", "qwen2.5-7b-h100", "gpu2"),
    Seat("Qwen/Qwen2.5-7B-Instruct", "qwen2.5-7b-h100", "gpu3"),
    Seat("mistralai/Mixtral-8x7B-Instruct-v0.1", "mixtral-8x7b-h100-tp2", "gpu4-5"),
    Seat("mistralai/Mixtral-8x7B-Instruct-v0.1", "mixtral-8x7b-h100-tp2", "gpu6-7"),
)

DEPLOYMENTS: dict[str, Deployment] = {
    "baseline": Deployment(kv_mode="static", prefix_caching=True),
    "managed": Deployment(kv_mode="elastic", prefix_caching=False),
    "managed-prefix": Deployment(kv_mode="elastic", prefix_caching=True),
}
FLEETS: tuple[str, ...] = tuple(DEPLOYMENTS)


def deployment(name: str) -> Deployment:
    """The deployment called `name`, or ValueError listing the known ones."""
    try:
        return DEPLOYMENTS[name]
    except KeyError:
        raise ValueError(f"unknown fleet {name!r}; available: {', '.join(FLEETS)}") from None


def seats(remap: Mapping[str, str] | None = None) -> tuple[Seat, ...]:
    """The reference layout, each seat's profile replaced by `remap[profile]` when given."""
    if not remap:
        return REFERENCE
    return tuple(replace(seat, profile=remap.get(seat.profile, seat.profile)) for seat in REFERENCE)


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
