"""A fleet's engines, built from replica specs: the specs of a deployed layout, the shared
KV pools and GPUs of the replicas that name one."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from loadtest.sim.engine import EngineConfig
from loadtest.sim.engine_kind import Engine, make_engine
from loadtest.sim.gpus import SharedGpu, shared_pool
from loadtest.sim.kvcache import SharedKVPool
from loadtest.sim.layout import deployment, placements
from loadtest.sim.profiles import DEFAULT_GPU_MEMORY_UTILIZATION, Profile, load_profile


@dataclass(frozen=True, slots=True)
class VirtualReplica:
    """One simulated replica. Replicas naming the same `pool` share its KV memory (elastic;
    it holds the sum of their static KV bytes, loadtest.sim.gpus); replicas naming the same
    `gpu` share its time."""

    name: str
    profile: str
    config: EngineConfig = field(default_factory=EngineConfig)
    pool: str | None = None
    model: str | None = None  # the served model name; None = the profile's
    gpu: str | None = None


def build_engines(
    specs: Sequence[VirtualReplica],
) -> list[tuple[VirtualReplica, Profile, Engine]]:
    """An engine per spec; elastic replicas naming one pool get one `SharedKVPool`, sized by
    all of them, and replicas naming one GPU one `SharedGpu`."""
    profiles = {spec.profile: load_profile(spec.profile) for spec in specs}
    residents: dict[str, list[tuple[Profile, int, int | None, float]]] = {}
    for spec in specs:
        if spec.pool is not None:
            config = spec.config
            resident = (
                profiles[spec.profile],
                config.block_size,
                config.num_blocks,
                config.gpu_memory_utilization,
            )
            residents.setdefault(spec.pool, []).append(resident)
    pools: dict[str, SharedKVPool] = {
        name: shared_pool(name, members) for name, members in residents.items()
    }
    gpus = {spec.gpu: SharedGpu(spec.gpu) for spec in specs if spec.gpu is not None}
    built = []
    for spec in specs:
        profile = profiles[spec.profile]
        pool = pools[spec.pool] if spec.pool is not None else None
        gpu = gpus[spec.gpu] if spec.gpu is not None else None
        built.append((spec, profile, make_engine(profile, spec.config, pool, gpu)))
    return built


def deployed_replicas(
    fleet: str,
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION,
    remap: Mapping[str, str] | None = None,
) -> list[VirtualReplica]:
    """Fleet `fleet`'s layout deployed its way (loadtest.sim.layout), replicas named
    replica-0, 1, ...: elastic ones share one pool per GPU (group), engines on one GPU its
    time, and each engine gets its share of `gpu_memory_utilization`. `remap` puts it on other
    hardware (layout.on_hardware)."""
    deployed = deployment(fleet)
    return [
        VirtualReplica(
            f"replica-{index}",
            place.seat.profile,
            EngineConfig(
                prefix_caching=deployed.prefix_caching,
                kv_mode=deployed.kv_mode,
                max_cached_tokens=deployed.max_cached_tokens,
                gpu_memory_utilization=place.memory_share,
            ),
            place.kv_pool,
            place.seat.model,
            place.gpu,
        )
        for index, place in enumerate(placements(fleet, gpu_memory_utilization, remap))
    ]
