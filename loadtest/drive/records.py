"""What was measured for one request."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from itertools import accumulate, pairwise
from typing import Any, Literal

# Why a request failed; None when it succeeded.
ErrorKind = Literal["connect", "timeout", "http_4xx", "http_5xx", "stream", "client"]


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the generator saw it. Times are seconds; `*_s` instants are relative to
    the start of the run, durations are relative to `sent_s`."""

    index: int
    model: str
    scheduled_s: float
    sent_s: float
    # How late the generator sent it (sent_s - scheduled_s); 0 in closed loop.
    lag_s: float
    # HTTP status, or 0 when no response arrived.
    status: int
    error_kind: ErrorKind | None = None
    error: str | None = None
    # To the first token chunk (streaming), or to the whole response (docs/loadtest.md).
    ttft_s: float | None = None
    # Gaps between successive token chunks, blank ones included.
    itl_s: tuple[float, ...] = field(default=())
    # (e2e - ttft) / (output_tokens - 1): time per output token after the first.
    tpot_s: float | None = None
    # To the last token chunk (streaming), or to the whole response.
    e2e_s: float | None = None
    # Served (the usage chunk).
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    # The x-turnout-replica header, when the target is a gateway.
    replica: str | None = None
    # What the schedule asked for (template included), to compare with `prompt_tokens`.
    requested_prompt_tokens: int | None = None
    # Positions (from 0) of token chunks whose text was empty (a partial UTF-8 character,
    # a special token): timed like the others, left out of the visible-text variants.
    blank_chunks: tuple[int, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.error_kind is None

    def visible(self) -> tuple[float | None, tuple[float, ...]]:
        """TTFT and gaps over the chunks with visible text only: when a reader sees text."""
        if not self.blank_chunks or self.ttft_s is None:
            return self.ttft_s, self.itl_s
        blank = set(self.blank_chunks)
        times = [self.ttft_s, *(self.ttft_s + t for t in accumulate(self.itl_s))]
        shown = [t for i, t in enumerate(times) if i not in blank]
        if not shown:
            return None, ()
        return shown[0], tuple(b - a for a, b in pairwise(shown))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["itl_s"] = list(self.itl_s)
        data["blank_chunks"] = list(self.blank_chunks)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestRecord:
        return cls(
            **{
                **data,
                "itl_s": tuple(data.get("itl_s") or ()),
                "blank_chunks": tuple(data.get("blank_chunks") or ()),
            }
        )
