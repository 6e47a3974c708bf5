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


class _Load:
    """What an engine's state costs any new arrival, kept until the engine changes."""

    __slots__ = ("backlog", "budget", "context", "decoding", "floor", "full", "seats", "version")

    def __init__(self, engine: EngineModel, version: tuple[int, int]) -> None:
        self.version = version
        self.backlog = engine.prefill_backlog()
        self.decoding, self.context, self.seats = engine.batch()
        self.budget = max(1, engine.config.max_num_batched_tokens - self.decoding)
        pairs = self.context + self.budget * (self.budget + 1) // 2
        self.full = engine.profile.step_time(
            self.decoding + self.budget, self.context + self.budget, pairs
        )
        # The least any prompt waits here (one uncached token): what the search prunes by.
        self.floor = self.seconds(engine, 1)

    def seconds(self, engine: EngineModel, own: int) -> float:
        """From the end of the current step to the first token of a prompt with `own`
        uncached tokens (non-decreasing in `own`)."""
        profile, config = engine.profile, engine.config
        full, last = divmod(self.backlog + own, self.budget)
        seconds = full * self.full
        if last:
            pairs = self.context + last * (last + 1) // 2
            seconds += profile.step_time(self.decoding + last, self.context + last, pairs)
        if self.seats >= config.max_num_seqs:
            # No seat until someone finishes: at least a decode step per request ahead of it.
            itl = profile.decode_itl(self.decoding, self.context // max(1, self.decoding))
            seconds += (self.seats - config.max_num_seqs + 1) * itl
        return seconds


class Oracle:
    """Route to the least predicted TTFT from the engines' true state (virtual time only)."""

    name = "oracle"

    def __init__(self) -> None:
        self._fleet: TrueFleet | None = None
        self._turn = 0
        self._loads: dict[str, _Load] = {}

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
        self._turn += 1
        count = len(candidates)
        # Each candidate's least possible TTFT first (cheap: kept per engine state), then
        # exact predictions in that order until the least left cannot win.
        bounds = []
        for index, view in enumerate(candidates):
            engine, wait = fleet.true_state(view.id)
            load = self._load(view.id, engine)
            bounds.append((wait + load.floor, index, wait, engine, load))
        bounds.sort(key=_first)
        hashes: dict[int, list[int]] = {}
        best = -1
        best_key = (float("inf"), 0, 0)
        for bound, index, wait, engine, load in bounds:
            if bound > best_key[0]:
                break
            block = engine.config.block_size
            if block not in hashes:
                hashes[block] = block_hashes(ids, block)
            own = max(1, len(ids) - engine.cached_tokens(hashes[block], len(ids)))
            # Ties (idle replicas) rotate, so that light load spreads over the fleet.
            key = (wait + load.seconds(engine, own), load.seats, (index - self._turn) % count)
            if key < best_key:
                best, best_key = index, key
        return candidates[best]

    def _load(self, name: str, engine: EngineModel) -> _Load:
        version = engine.version()
        load = self._loads.get(name)
        if load is None or load.version != version:
            load = self._loads[name] = _Load(engine, version)
        return load


def _first(entry: tuple[float, int, float, EngineModel, _Load]) -> float:
    return entry[0]


def predicted_ttft(
    engine: EngineModel, wait: float, hashes: list[int], prompt_len: int
) -> tuple[float, int]:
    """(seconds to this prompt's first token on `engine`, requests holding or awaiting a
    seat there). `wait` is what the engine's current step still runs."""
    load = _Load(engine, engine.version())
    own = max(1, prompt_len - engine.cached_tokens(hashes, prompt_len))
    return wait + load.seconds(engine, own), load.seats
