"""What was measured for one request."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
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
    # To the first chunk that carries content (streaming), or to the whole response.
    ttft_s: float | None = None
    # Gaps between successive chunks with content.
    itl_s: tuple[float, ...] = field(default=())
    # (e2e - ttft) / (output_tokens - 1): time per output token after the first.
    tpot_s: float | None = None
    e2e_s: float | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    # The x-turnout-replica header, when the target is a gateway.
    replica: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_kind is None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["itl_s"] = list(self.itl_s)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestRecord:
        return cls(**{**data, "itl_s": tuple(data.get("itl_s") or ())})
