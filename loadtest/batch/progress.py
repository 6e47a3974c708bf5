"""Live progress of a batch job: a rich bar on a terminal, a plain line every few seconds
otherwise (logs of a job that runs for a day)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import IO, Any, Protocol


@dataclass(frozen=True, slots=True)
class BatchSnapshot:
    """The job at one tick. `done` counts results from earlier runs too."""

    elapsed_s: float
    total: int
    done: int
    failed: int
    in_flight: int
    waiting: int  # requests waiting to be sent again
    retries: int
    rate: float  # results per second, recently
    output_tokens_per_s: float  # recently

    @property
    def eta_s(self) -> float | None:
        left = self.total - self.done
        if left <= 0:
            return 0.0
        return left / self.rate if self.rate > 0 else None


class BatchProgressSink(Protocol):
    def update(self, snapshot: BatchSnapshot) -> None: ...

    def close(self) -> None: ...


def duration(seconds: float | None) -> str:
    """12s, 3m05s, 4h02m, 2d03h."""
    if seconds is None:
        return "-"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def line(s: BatchSnapshot) -> str:
    share = s.done / s.total if s.total else 1.0
    return (
        f"{s.done:,}/{s.total:,} ({share:.1%})  {s.rate:,.1f} req/s  "
        f"{s.output_tokens_per_s:,.0f} tok/s out  ETA {duration(s.eta_s)}  "
        f"failed {s.failed:,}  retries {s.retries:,}  in flight {s.in_flight}"
        + (f"  waiting {s.waiting}" if s.waiting else "")
        + f"  {duration(s.elapsed_s)}"
    )


class PlainBatchProgress:
    def __init__(self, stream: IO[str] | None = None, every_s: float = 10.0) -> None:
        self._stream = stream or sys.stderr
        self._every = every_s
        self._next = 0.0
        self._unprinted: BatchSnapshot | None = None

    def update(self, snapshot: BatchSnapshot) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self._every
            self._unprinted = None
            print(line(snapshot), file=self._stream, flush=True)
        else:
            self._unprinted = snapshot

    def close(self) -> None:
        """The last state is always printed."""
        if self._unprinted is not None:
            print(line(self._unprinted), file=self._stream, flush=True)


class LiveBatchProgress:
    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self._console = console or Console(stderr=True)
        self._live = Live(console=self._console, auto_refresh=False, transient=False)
        self._live.start()

    def update(self, snapshot: BatchSnapshot) -> None:
        self._live.update(render(snapshot), refresh=True)

    def close(self) -> None:
        self._live.stop()


def render(snapshot: BatchSnapshot) -> Any:
    """The bar with done/total, rate and ETA; under it tokens, failures and what is in flight."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    s = snapshot
    share = s.done / s.total if s.total else 1.0
    head = Text.assemble(
        (f"{s.done:,}/{s.total:,}", "bold"),
        f" ({share:.1%})  {s.rate:,.1f} req/s  ETA {duration(s.eta_s)}",
    )
    failed = Text(f"failed {s.failed:,}", style="red" if s.failed else "")
    tail = Text.assemble(
        f"{s.output_tokens_per_s:,.0f} tok/s out  ",
        failed,
        f"  retries {s.retries:,}  in flight {s.in_flight}",
        f" +{s.waiting} waiting" if s.waiting else "",
        f"  {duration(s.elapsed_s)}",
    )
    table = Table.grid(padding=(0, 2))
    table.add_row(ProgressBar(total=max(s.total, 1), completed=s.done, width=24), head)
    return Group(table, tail)


def default_batch_progress() -> BatchProgressSink:
    return LiveBatchProgress() if sys.stderr.isatty() else PlainBatchProgress()
