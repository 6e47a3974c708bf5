"""The engine's mutable state for one request (the engine's private bookkeeping)."""

from loadtest.sim.types import FinishReason, SimRequest

WAITING, PREFILLING, DECODING = 0, 1, 2


class EngineRequest:
    """Where one request stands in the engine.

    While decoding, the output count is not updated every step: it is
    `start_out + (completed steps - start_step)`; `out` is exact otherwise.
    `epoch` grows whenever the request leaves the batch, which voids its
    pending agenda entries.
    """

    __slots__ = (
        "arrival",
        "blocks",
        "computed",
        "end_step",
        "epoch",
        "final",
        "first_token",
        "hashes",
        "id",
        "out",
        "preemptions",
        "prompt_len",
        "reason",
        "registered",
        "scheduled",
        "start_out",
        "start_step",
        "state",
        "target",
    )

    def __init__(self, request: SimRequest, final: int, reason: FinishReason) -> None:
        self.id = request.id
        self.arrival = request.arrival
        self.prompt_len = request.prompt_len
        self.final = final  # output tokens at which it finishes
        self.reason: FinishReason = reason  # why it finishes then ("stop" or "length")
        self.hashes: list[int] = []  # chained hashes of its full prompt blocks
        self.blocks: list[int] = []
        self.registered = 0  # leading blocks already published to the prefix cache
        self.target = (
            self.prompt_len
        )  # tokens to prefill: the prompt, plus outputs after preemption
        self.computed = 0
        self.out = 0
        self.start_out = 0
        self.start_step = 0
        self.end_step = 0  # while decoding: the step whose end it finishes at
        self.state = WAITING
        self.epoch = 0
        self.preemptions = 0
        self.scheduled: float | None = None
        self.first_token: float | None = None
