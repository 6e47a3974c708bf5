"""Which engine model a replica runs: vLLM's scheduler or the slots of Ollama / llama-server,
as its profile says (Profile.engine). Both are driven the same way."""

from typing import Protocol

from loadtest.sim.engine import EngineConfig, EngineModel
from loadtest.sim.gpus import SharedGpu
from loadtest.sim.kvcache import SharedKVPool
from loadtest.sim.profiles import Profile
from loadtest.sim.slots import SlotEngine
from loadtest.sim.types import EngineStats, SimRequest, StepResult


class Engine(Protocol):
    """What the real-time replica and the virtual runner call on an engine model."""

    def add(self, request: SimRequest, now: float) -> None: ...

    def abort(self, request_id: str, now: float | None = None) -> bool: ...

    def has_work(self) -> bool: ...

    def step(self, now: float) -> StepResult: ...

    def stats(self) -> EngineStats: ...


def make_engine(
    profile: Profile,
    config: EngineConfig,
    pool: SharedKVPool | None = None,
    gpu: SharedGpu | None = None,
) -> Engine:
    """The engine model `profile.engine` names, with `config`; ValueError if they disagree
    (an elastic pool and a shared GPU are vLLM's only)."""
    if profile.engine == "vllm":
        return EngineModel(profile, config, pool, gpu)
    if pool is not None:
        raise ValueError(f"profile {profile.name} runs {profile.engine}: no elastic KV pool")
    if gpu is not None:
        raise ValueError(f"profile {profile.name} runs {profile.engine}: no shared GPU")
    return SlotEngine(profile, config, profile.engine)
