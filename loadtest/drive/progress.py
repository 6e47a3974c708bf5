"""Live progress of a run: a rich display on a terminal, plain periodic lines otherwise."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import IO, Any, Protocol


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The state of a run at one tick."""

    elapsed_s: float
    total: int
    sent: int
    done: int
    errors: int
    in_flight: int
    # Completions per second over the last few seconds.
    rate: float
    # Median TTFT of the most recent successful requests.
    ttft_p50_s: float | None
    lag_p99_s: float | None


class ProgressSink(Protocol):
    """Receives snapshots while a run lasts."""

    def update(self, snapshot: Snapshot) -> None: ...

    def close(self) -> None: ...


def _line(s: Snapshot) -> str:
    ttft = f"{s.ttft_p50_s * 1000:.0f} ms" if s.ttft_p50_s is not None else "-"
    lag = f"{s.lag_p99_s * 1000:.1f} ms" if s.lag_p99_s is not None else "-"
    return (
        f"{s.elapsed_s:6.1f}s  done {s.done}/{s.total}  in flight {s.in_flight}  "
        f"{s.rate:.1f} req/s  ttft p50 {ttft}  errors {s.errors}  lag p99 {lag}"
    )


class PlainProgress:
    """One line every `every_s` seconds, for logs and pipes."""

    def __init__(self, stream: IO[str] | None = None, every_s: float = 5.0) -> None:
        self._stream = stream or sys.stderr
        self._every = every_s
        self._next = 0.0

    def update(self, snapshot: Snapshot) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self._every
            print(_line(snapshot), file=self._stream, flush=True)

    def close(self) -> None:
        pass


class LiveProgress:
    """A rich live table, refreshed at each snapshot."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self._console = console or Console(stderr=True)
        self._live = Live(console=self._console, auto_refresh=False, transient=False)
        self._live.start()

    def update(self, snapshot: Snapshot) -> None:
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        table = Table.grid(padding=(0, 2))
        table.add_row(
            ProgressBar(total=max(snapshot.total, 1), completed=snapshot.done, width=30),
            _line(snapshot),
        )
        self._live.update(table, refresh=True)

    def close(self) -> None:
        self._live.stop()


def default_progress() -> ProgressSink:
    """Live display when stderr is a terminal, plain lines otherwise."""
    return LiveProgress() if sys.stderr.isatty() else PlainProgress()
