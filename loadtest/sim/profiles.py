"""Engine profiles: one model on one kind of GPU, and its roofline step time.

The hand-made profiles ship as data in profiles.yaml; any other name is composed from the
hardware tables (hardware.py, hardware.yaml, engines.yaml). Each number comes with the public
sources it comes from; docs/simulator.md explains the derivations and the calibration.
"""

import dataclasses
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

import yaml

# The profiles `vllm-sim profiles` lists: the hand-made ones, then the composed ones that ship
# with a calibration test or a stated reason for having none (docs/simulator.md, "Hardware").
# Any other composable name loads too.
HAND_MADE: tuple[str, ...] = (
    "llama-3.1-8b-h100",
    "qwen2.5-7b-h100",
    "qwen2.5-7b-gb10",
    "mixtral-8x7b-h100-tp2",
    "tiny",
)
COMPOSED: tuple[str, ...] = (
    "llama-3.1-8b-fp8-gb10",
    "llama-3.1-70b-fp8-gb10",
    "qwen3-32b-fp8-gb10",
    "qwen3-32b-fp8-kvfp8-gb10",
    "qwen3-32b-q8_0-gb10-ollama",
    "qwen2.5-7b-fp16-gb10-ollama",
    "llama-3.1-70b-fp4-b200",
    "llama-3.1-70b-fp4-kvfp8-b200",
    "llama-3.1-70b-fp8-b200",
    "llama-3.1-8b-fp4-b200",
    "llama-3.1-70b-fp4-kvfp8-rtxpro6000",
    "llama-3.1-70b-fp4-kvfp8-rtxpro6000-pp2",
    "llama-3.1-70b-fp8-rtxpro6000",
    "llama-3.1-70b-fp8-kvfp8-rtxpro6000",
    "llama-3.1-70b-fp8-kvfp8-h100-tp2",
    "llama-3.1-70b-fp8-kvfp8-h200-tp2",
    "llama-3.1-70b-bf16-h100-tp4",
    "llama-3.1-70b-bf16-h100-tp8",
    "llama-3.1-70b-bf16-h100-tp8-pp2",
    "llama-3.1-70b-bf16-h100-tp4-pp2",
    "llama-3.1-70b-bf16-rtxpro6000-tp4",
)
PROFILES: tuple[str, ...] = HAND_MADE + COMPOSED
EngineKind = Literal["vllm", "ollama", "llamacpp"]


GIB = 1024**3
# vLLM's default share of GPU memory for weights, activations and KV cache.
DEFAULT_GPU_MEMORY_UTILIZATION = 0.9


class UnknownProfile(LookupError):
    """The profile name is neither hand-made nor composable, or names hardware that cannot
    run it (the message says which)."""


@dataclass(frozen=True, slots=True)
class Profile:
    """One model served by an engine on one GPU type, in the units of profiles.yaml.

    Byte and token figures are for the whole replica (all its tensor- and pipeline-parallel
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
    # Bytes of weights a step streams, when not all of them (0: weight_bytes): the input
    # embedding table is gathered a row a token, not read in full.
    step_weight_bytes: float = 0.0
    # Tensor parallel all-reduces: `allreduce_seconds` of latency a step, plus the step's
    # tokens x `allreduce_bytes_per_token` at the link's `allreduce_bandwidth` (0: none).
    allreduce_bytes_per_token: float = 0.0
    allreduce_bandwidth: float = 0.0
    # Pipeline parallel: stages, and what crosses each stage boundary (latency; activation
    # bytes per token at the link's bandwidth).
    pipeline_parallel: int = 1
    pp_latency: float = 0.0
    pp_bytes_per_token: float = 0.0
    pp_bandwidth: float = 0.0
    # The engine that serves it: vllm (engine.py), or ollama / llamacpp (slots.py), with
    # their slot context and tokens per forward pass.
    engine: EngineKind = "vllm"
    slot_context: int = 0
    batch_tokens: int = 0
    # What it was composed from (hardware.yaml keys); empty for hand-made profiles.
    gpu: str = ""
    weights: str = ""
    kv_dtype: str = ""
    sources: tuple[str, ...] = ()
    notes: str = ""

    @property
    def gpus(self) -> int:
        return self.tensor_parallel * self.pipeline_parallel

    def weight_bytes_read(self, num_tokens: int) -> float:
        """Weight bytes one step reads: MoE steps read only the experts their tokens touch."""
        streamed = self.step_weight_bytes or self.weight_bytes
        if self.num_experts == 0 or num_tokens <= 0:
            return streamed
        untouched = (1.0 - self.experts_per_token / self.num_experts) ** num_tokens
        return streamed - self.expert_weight_bytes * untouched

    def step_time(
        self,
        num_tokens: int,
        kv_tokens_read: int,
        attention_pairs: int = 0,
        num_seqs: int | None = None,
    ) -> float:
        """Seconds for one engine step: overhead + max(memory time, compute time) + the
        interconnect's time.

        `num_tokens` is every token the step computes (one per decoding sequence
        plus prefill chunk tokens); `kv_tokens_read` is the context the step's
        attention reads from the KV cache; `attention_pairs` counts (query, key)
        pairs, which makes long prefills cost more than linear. Tensor parallelism
        splits both bytes and FLOPs over the GPUs and adds all-reduces. Pipeline
        parallelism (pp stages) splits the step's `num_seqs` sequences into
        m = min(pp, num_seqs) micro-batches that follow each other through the stages:
        every micro-batch streams its stage's weights, so the step streams all weights
        once per micro-batch at one stage's bandwidth at a time, while KV reads and FLOPs
        spread over the stages; with fewer micro-batches than stages, stages idle (the
        bubble). docs/simulator.md derives it.
        """
        tp, pp = self.tensor_parallel, self.pipeline_parallel
        kv_bytes = kv_tokens_read * self.kv_bytes_per_token
        flops = (
            2.0 * self.params_active * num_tokens + self.attention_flops_per_pair * attention_pairs
        )
        micro = 1 if pp == 1 else min(pp, max(1, num_tokens if num_seqs is None else num_seqs))
        memory_time = (self.weight_bytes_read(num_tokens) + kv_bytes / micro) / (
            tp * self.hbm_bandwidth * self.hbm_efficiency
        )
        compute_time = flops / (micro * tp * self.flops * self.flops_efficiency)
        comms = 0.0
        if tp > 1:
            comms = self.allreduce_seconds
            if self.allreduce_bandwidth:
                comms += (
                    num_tokens / micro * self.allreduce_bytes_per_token / self.allreduce_bandwidth
                )
        if pp > 1:
            per_boundary = self.pp_latency
            if self.pp_bandwidth:
                per_boundary += num_tokens / micro * self.pp_bytes_per_token / self.pp_bandwidth
            comms += (pp - 1) * per_boundary
        return self.step_overhead_seconds + max(memory_time, compute_time) + comms

    def kv_tokens(self, gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION) -> int:
        """KV capacity in tokens when the engine may use this fraction of GPU memory:
        (fraction x memory - weights - reserved) per GPU over the KV bytes per token per GPU.
        The same for a static cache (vLLM reserves it at start) and an elastic pool (KVCached
        maps it on demand), so that both kinds of fleet get the same memory."""
        if self.kv_capacity_tokens:
            return self.kv_capacity_tokens
        gpus = self.gpus
        free = gpu_memory_utilization * self.gpu_memory_gib - self.reserved_gib
        kv_bytes = free * GIB - self.weight_bytes / gpus
        return max(0, int(kv_bytes / (self.kv_bytes_per_token / gpus)))

    def kv_blocks(
        self, block_size: int, gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION
    ) -> int:
        """KV capacity in blocks of `block_size` tokens."""
        return self.kv_tokens(gpu_memory_utilization) // block_size

    def decode_itl(self, batch: int, context: int) -> float:
        """Inter-token latency of a pure decode step: `batch` sequences of `context` tokens."""
        return self.step_time(batch, batch * context, batch * context, batch)


@cache  # read once: a study builds hundreds of replicas
def _read_profiles() -> dict[str, Any]:
    text = resources.files("loadtest.sim").joinpath("profiles.yaml").read_text("utf-8")
    # libyaml's safe loader: the same data, ~7x faster than the pure-Python one (every replica
    # of every environment a comparison looks at loads its profile).
    data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    if not isinstance(data, dict):
        raise ValueError("profiles.yaml must map profile names to their fields")
    return data


def load_profile(name: str) -> Profile:
    """The profile called `name`: a hand-made one from profiles.yaml, else one composed from
    the hardware tables (`loadtest.sim.hardware.compose`); UnknownProfile saying why not."""
    return _load(name)


@cache
def _load(name: str) -> Profile:
    data = _read_profiles()
    if name not in data:
        from loadtest.sim.hardware import compose  # the tables import this module

        try:
            return compose(name)
        except UnknownProfile as exc:
            if not str(exc).startswith("unknown profile"):
                raise  # a known name that cannot run (its message says why)
            raise UnknownProfile(
                f"{exc}; hand-made profiles: {', '.join(HAND_MADE)} (`vllm-sim profiles` "
                "lists the shipped ones)"
            ) from None
    fields = dict(data[name])
    fields["sources"] = tuple(fields.get("sources") or ())
    # YAML 1.1 reads "16.06e9" as a string, so every number is converted here.
    for spec in dataclasses.fields(Profile):
        if spec.name in fields and spec.type in (int, float):
            fields[spec.name] = spec.type(float(fields[spec.name]))
    return Profile(name=name, **fields)
