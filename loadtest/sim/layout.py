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

from dataclasses import dataclass
from typing import Literal

from loadtest.sim.kvcache import KVCACHED_MAX_CACHED_TOKENS

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
