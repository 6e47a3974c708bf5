"""The engine model: a vLLM V1-style scheduler over a block KV cache, in simulated time.

Pure: no I/O, no clock. The caller passes `now` and advances its own clock by
each step's `duration` (real time in the HTTP server, virtual time offline).
"""

from dataclasses import dataclass
from typing import Literal

from loadtest.sim.kvcache import SharedKVPool
from loadtest.sim.profiles import Profile
from loadtest.sim.types import EngineStats, SimRequest, StepResult


class RequestRejected(ValueError):
    """The request can never run here (too long for the model or the whole cache)."""


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Scheduler and cache settings, named after vLLM's engine arguments.

    `num_blocks` None takes the profile's KV capacity. In elastic mode the shared
    pool's size is the budget and `num_blocks` caps what one replica may hold.
    """

    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    block_size: int = 16
    num_blocks: int | None = None
    prefix_caching: bool = True
    kv_mode: Literal["static", "elastic"] = "static"


class EngineModel:
    """One replica's engine: FCFS waiting queue, running set, chunked prefill, preemption.

    Use: `add(request, now)` when a request arrives; while `has_work()`, call
    `step(now)` and advance the clock by `result.duration`; `abort(id)` when the
    client leaves; `stats()` for /metrics.
    """

    def __init__(
        self, profile: Profile, config: EngineConfig, pool: SharedKVPool | None = None
    ) -> None:
        self.profile = profile
        self.config = config
        raise NotImplementedError

    def add(self, request: SimRequest, now: float) -> None:
        """Queue a request (arrived at `now`); RequestRejected if it can never run."""
        raise NotImplementedError

    def abort(self, request_id: str) -> bool:
        """Drop a waiting or running request and free its blocks at once.

        Counted as finished_reason "abort"; its FinishedRequest comes out in the
        next step's `finished`. False if the id is unknown or already finished.
        """
        raise NotImplementedError

    def has_work(self) -> bool:
        """True while any request is waiting or running."""
        raise NotImplementedError

    def step(self, now: float) -> StepResult:
        """Schedule and run one engine step starting at `now`."""
        raise NotImplementedError

    def stats(self) -> EngineStats:
        """Counters and gauges for vLLM's /metrics, as of the last step."""
        raise NotImplementedError
