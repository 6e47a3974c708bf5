"""Engines that share a GPU (or a tensor-parallel GPU group): its KV memory and its time.

Memory. A static engine reserves its share of the GPU's memory at start-up (vLLM's
--gpu-memory-utilization, a per-instance budget): its KV cache is that share less the
engine's reserved memory and weights (`kv_bytes`). An elastic pool (KVCached) holds what
the static split would have given its residents, summed: on a GPU whose k engines each
have share u/k, that is u x the GPU's memory less every resident's weights and reserved
memory. So a fleet's static and elastic deployments have the same bytes of KV; elastic
ones only decide at run time which model holds them. Bytes, not blocks: one model's KV
bytes per token differ from another's.

Time. Engines on one GPU take turns on its SMs and HBM: a decode step is mostly a read of
the model's own weights and KV, so two models' steps cannot overlap their reads. A step's
GPU time (the roofline part; not the host-side overhead, which runs on the engine's own CPU
thread) is multiplied by the number of the GPU's engines that have requests running when
it starts (`SharedGpu.busy`): two busy engines each step at half speed, one busy engine at
full speed while its neighbour idles.
"""

from collections.abc import Sequence
from typing import Protocol

from loadtest.sim.kvcache import SharedKVPool
from loadtest.sim.profiles import Profile


class _Engine(Protocol):
    def is_running(self) -> bool: ...


class SharedGpu:
    """The GPU time of the engines resident on one GPU (group)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._engines: list[_Engine] = []

    def join(self, engine: _Engine) -> None:
        self._engines.append(engine)

    def busy(self) -> int:
        """How many resident engines have requests running right now."""
        return sum(1 for engine in self._engines if engine.is_running())


def block_bytes(profile: Profile, block_size: int) -> int:
    """Bytes of one KV block of `block_size` tokens (the whole replica, every TP rank)."""
    return max(1, int(block_size * profile.kv_bytes_per_token))


def kv_bytes(
    profile: Profile, block_size: int, num_blocks: int | None, gpu_memory_utilization: float
) -> int:
    """Bytes of KV an engine reserves on its own at this memory share (or `num_blocks`)."""
    blocks = num_blocks or profile.kv_blocks(block_size, gpu_memory_utilization)
    return blocks * block_bytes(profile, block_size)


# An engine on a pool: its profile, block size, explicit blocks (or None) and memory share.
Resident = tuple[Profile, int, int | None, float]


def pool_bytes(residents: Sequence[Resident]) -> int:
    """An elastic pool's bytes: its residents' static KV bytes summed."""
    return sum(kv_bytes(*resident) for resident in residents)


def shared_pool(name: str, residents: Sequence[Resident]) -> SharedKVPool:
    """The pool `name` of these residents, or ValueError when they leave no memory for KV."""
    total = pool_bytes(residents)
    if total <= 0:
        raise ValueError(
            f"KV pool {name}: its engines' weights and reserved memory leave no room for KV"
        )
    return SharedKVPool(name, total)
