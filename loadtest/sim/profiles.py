"""Engine profiles: one model on one kind of GPU, and its roofline step time.

The numbers ship as data in profiles.yaml, each with the public sources it comes
from; docs/simulator.md explains the derivations and the calibration.
"""

import dataclasses
import functools
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

PROFILES: tuple[str, ...] = (
    "llama-3.1-8b-h100",
    "qwen2.5-7b-h100",
    "qwen2.5-7b-gb10",
    "mixtral-8x7b-h100-tp2",
    "tiny",
)


GIB = 1024**3
# vLLM's default share of GPU memory for weights, activations and KV cache.
DEFAULT_GPU_MEMORY_UTILIZATION = 0.9


class UnknownProfile(LookupError):
    """The profile name is not one that ships with the simulator."""


@dataclass(frozen=True, slots=True)
class Profile:
    """One model served by vLLM on one GPU type, in the units of profiles.yaml.

    Byte and token figures are for the whole replica (all its tensor-parallel
    GPUs); bandwidth and FLOP/s are per GPU.
    """

    name: str
    model: str
    params_total: float
    params_active: float
    weight_bytes: float
    kv_bytes_per_token: float
    hbm_bandwidth: float
    hbm_efficiency: float
    flops: float
    flops_efficiency: float
    tensor_parallel: int
    allreduce_seconds: float
    step_overhead_seconds: float
    max_model_len: int
    # GPU memory per GPU and what the engine keeps besides weights and KV (activations, CUDA
    # graphs, non-torch memory), in GiB: the KV capacity follows from them and vLLM's
    # gpu_memory_utilization. A fixed `kv_capacity_tokens` (test profiles) overrides them.
    gpu_memory_gib: float = 0.0
    reserved_gib: float = 0.0
    kv_capacity_tokens: int = 0
    # How much slower a KVCached (elastic) engine's step is with a full batch than stock
    # vLLM's; it grows with the batch from nothing (see profiles.yaml for the calibration).
    elastic_full_batch_overhead: float = 0.0
    # FLOPs of attention per (query token, context token) pair: 4 x layers x heads x head_dim.
    attention_flops_per_pair: float = 0.0
    expert_weight_bytes: float = 0.0
    num_experts: int = 0
    experts_per_token: int = 0
    sources: tuple[str, ...] = ()
    notes: str = ""

    def weight_bytes_read(self, num_tokens: int) -> float:
        """Weight bytes one step reads: MoE steps read only the experts their tokens touch."""
        if self.num_experts == 0 or num_tokens <= 0:
            return self.weight_bytes
        untouched = (1.0 - self.experts_per_token / self.num_experts) ** num_tokens
        return self.weight_bytes - self.expert_weight_bytes * untouched

    def step_time(self, num_tokens: int, kv_tokens_read: int, attention_pairs: int = 0) -> float:
        """Seconds for one engine step: overhead + max(memory time, compute time) + all-reduce.

        `num_tokens` is every token the step computes (one per decoding sequence
        plus prefill chunk tokens); `kv_tokens_read` is the context the step's
        attention reads from the KV cache; `attention_pairs` counts (query, key)
        pairs, which makes long prefills cost more than linear. Tensor parallelism
        splits both bytes and FLOPs over the GPUs.
        """
        tp = self.tensor_parallel
        memory_bytes = self.weight_bytes_read(num_tokens) + kv_tokens_read * self.kv_bytes_per_token
        memory_time = memory_bytes / (tp * self.hbm_bandwidth * self.hbm_efficiency)
        flops = (
            2.0 * self.params_active * num_tokens + self.attention_flops_per_pair * attention_pairs
        )
        compute_time = flops / (tp * self.flops * self.flops_efficiency)
        allreduce = self.allreduce_seconds if tp > 1 else 0.0
        return self.step_overhead_seconds + max(memory_time, compute_time) + allreduce

    def kv_tokens(self, gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION) -> int:
        """KV capacity in tokens when the engine may use this fraction of GPU memory:
        (fraction x memory - weights - reserved) per GPU over the KV bytes per token per GPU.
        The same for a static cache (vLLM reserves it at start) and an elastic pool (KVCached
        maps it on demand), so that both kinds of fleet get the same memory."""
        if self.kv_capacity_tokens:
            return self.kv_capacity_tokens
        tp = self.tensor_parallel
        free = gpu_memory_utilization * self.gpu_memory_gib - self.reserved_gib
        kv_bytes = free * GIB - self.weight_bytes / tp
        return max(0, int(kv_bytes / (self.kv_bytes_per_token / tp)))

    def kv_blocks(
        self, block_size: int, gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION
    ) -> int:
        """KV capacity in blocks of `block_size` tokens."""
        return self.kv_tokens(gpu_memory_utilization) // block_size

    def decode_itl(self, batch: int, context: int) -> float:
        """Inter-token latency of a pure decode step: `batch` sequences of `context` tokens."""
        return self.step_time(batch, batch * context, batch * context)


@functools.cache  # read once: a study builds hundreds of replicas
def _read_profiles() -> dict[str, Any]:
    text = resources.files("loadtest.sim").joinpath("profiles.yaml").read_text("utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError("profiles.yaml must map profile names to their fields")
    return data


def load_profile(name: str) -> Profile:
    """The profile called `name`, one of `PROFILES`."""
    data = _read_profiles()
    if name not in data:
        raise UnknownProfile(f"unknown profile {name!r}; available: {', '.join(PROFILES)}")
    fields = dict(data[name])
    fields["sources"] = tuple(fields.get("sources") or ())
    # YAML 1.1 reads "16.06e9" as a string, so every number is converted here.
    for spec in dataclasses.fields(Profile):
        if spec.name in fields and spec.type in (int, float):
            fields[spec.name] = spec.type(float(fields[spec.name]))
    return Profile(name=name, **fields)
