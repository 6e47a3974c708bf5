"""Small builders for engine tests, on the `tiny` profile."""

import zlib
from collections.abc import Sequence

from loadtest.sim.engine import EngineConfig, EngineModel
from loadtest.sim.gpus import block_bytes
from loadtest.sim.kvcache import SharedKVPool
from loadtest.sim.profiles import load_profile
from loadtest.sim.types import SimRequest, StepResult

TINY = load_profile("tiny")
TINY_BLOCK = block_bytes(TINY, 16)  # bytes of one 16-token block of the tiny profile


def tiny_pool(blocks: int, name: str = "gpu0") -> SharedKVPool:
    """An elastic pool holding `blocks` blocks of the tiny profile."""
    return SharedKVPool.of_blocks(name, blocks, TINY_BLOCK)


def free_blocks(pool: SharedKVPool) -> int:
    """Tiny-profile blocks the pool has free."""
    return pool.free_bytes // TINY_BLOCK


def tokens(count: int, start: int = 0) -> list[int]:
    return list(range(start, start + count))


def request(id: str, prompt: Sequence[int] | int, max_tokens: int = 4) -> SimRequest:
    """A request that runs to exactly `max_tokens` output tokens (ignore_eos).

    An int prompt is that many tokens unique to the id (no prefix shared by chance).
    """
    ids = (
        tokens(prompt, 10_000 * zlib.crc32(id.encode()))
        if isinstance(prompt, int)
        else list(prompt)
    )
    return SimRequest(id=id, prompt_token_ids=ids, max_tokens=max_tokens, ignore_eos=True)


def engine(pool: SharedKVPool | None = None, **config: object) -> EngineModel:
    if pool is not None:
        config["kv_mode"] = "elastic"
    return EngineModel(TINY, EngineConfig(**config), pool)  # type: ignore[arg-type]


class Clock:
    """Steps an engine in virtual time and keeps every result."""

    def __init__(self, model: EngineModel) -> None:
        self.model = model
        self.now = 0.0
        self.results: list[StepResult] = []

    def step(self) -> StepResult:
        result = self.model.step(self.now)
        self.now += result.duration
        self.results.append(result)
        return result

    def run(self, limit: int = 10_000) -> list[StepResult]:
        """Step until the engine is idle (at most `limit` steps)."""
        for _ in range(limit):
            if not self.model.has_work():
                return self.results
            self.step()
        raise AssertionError(f"engine still busy after {limit} steps")
