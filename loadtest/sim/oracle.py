"""The study's oracle: routing with the engines' true state, which no gateway can see.

At each arrival it reads every candidate engine (its waiting queue and unfinished prefill
chunks, its decoding batch and context, its prefix cache's match for this very prompt, how
long its current step still runs) and sends the request where its predicted time to first
token is lowest. The prediction follows the engine's own scheduler (FCFS chunked prefill:
the prompt tokens queued ahead plus this prompt's uncached ones, in steps of the token
budget left by the decoding batch, each step priced by the replica's profile).

It is a greedy reference, not a global optimum: it places each request as well as it can
be placed when it arrives, and ignores what later arrivals and decode growth do. A shipped
strategy can beat it on a figure it does not optimise (TPOT, goodput) and, rarely, on TTFT
p99 (a greedy choice is not a schedule). It exists only in virtual time: `run_virtual`
hands it the fleet through `attach_fleet`.
"""

from collections.abc import Sequence
from typing import Protocol

from loadtest.sim.engine import EngineModel
from loadtest.sim.kvcache import block_hashes
from routers.types import ReplicaView, RouteRequest


class TrueFleet(Protocol):
    """What the virtual runner lets a harness strategy read."""

    @property
    def arriving(self) -> object: ...

    def true_state(self, name: str) -> tuple[EngineModel, float]: ...


class Oracle:
    """Route to the least predicted TTFT from the engines' true state (virtual time only)."""

    name = "oracle"

    def __init__(self) -> None:
        self._fleet: TrueFleet | None = None
        self._turn = 0

    def attach_fleet(self, fleet: TrueFleet) -> None:
        self._fleet = fleet

    def choose(
        self, request: RouteRequest, candidates: Sequence[ReplicaView]
    ) -> ReplicaView | None:
        if not candidates:
            return None
        fleet = self._fleet
        if fleet is None:
            raise RuntimeError("the oracle routes only inside run_virtual (no fleet attached)")
        ids: list[int] = getattr(fleet.arriving, "prompt_token_ids", [])
        hashes: dict[int, list[int]] = {}
        self._turn += 1
        count = len(candidates)
        best: ReplicaView | None = None
        best_key = (float("inf"), 0, 0)
        for index, view in enumerate(candidates):
            engine, wait = fleet.true_state(view.id)
            block = engine.config.block_size
            if block not in hashes:
                hashes[block] = block_hashes(ids, block)
            ttft, seats = predicted_ttft(engine, wait, hashes[block], len(ids))
            # Ties (idle replicas) rotate, so that light load spreads over the fleet.
            key = (ttft, seats, (index - self._turn) % count)
            if key < best_key:
                best, best_key = view, key
        return best


def predicted_ttft(
    engine: EngineModel, wait: float, hashes: list[int], prompt_len: int
) -> tuple[float, int]:
    """(seconds to this prompt's first token on `engine`, requests holding or awaiting a
    seat there). `wait` is what the engine's current step still runs."""
    config, profile = engine.config, engine.profile
    own = max(1, prompt_len - engine.cached_tokens(hashes, prompt_len))
    decoding, context, seats = engine.batch()
    budget = max(1, config.max_num_batched_tokens - decoding)
    full, last = divmod(engine.prefill_backlog() + own, budget)
    seconds = wait
    if full:
        pairs = context + budget * (budget + 1) // 2
        seconds += full * profile.step_time(decoding + budget, context + budget, pairs)
    if last:
        pairs = context + last * (last + 1) // 2
        seconds += profile.step_time(decoding + last, context + last, pairs)
    if seats >= config.max_num_seqs:
        # No seat until someone finishes: at least a decode step per request ahead of it.
        seconds += (seats - config.max_num_seqs + 1) * profile.decode_itl(
            decoding, context // max(1, decoding)
        )
    return seconds, seats
