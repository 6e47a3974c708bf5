"""Do the live gateway and fleets agree with virtual time? Compared figure by figure on the
same schedule: the relative differences B - A (latencies in wall time at the live time scale
and in hardware time virtually, so only relative differences compare) must agree in sign
wherever either clock calls a side better."""

from dataclasses import dataclass
from typing import Any

import numpy as np

from loadtest.compare.judge import Judged

FIGURES = ("ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "e2e_p50_s")


@dataclass(frozen=True)
class FigureAgreement:
    figure: str
    virtual: float | None  # relative difference B - A
    live: float | None
    virtual_winner: str | None
    live_winner: str | None

    @property
    def agrees(self) -> bool:
        """Opposite winners disagree; a winner on one side and a difference of the other
        sign on the other disagree; anything else agrees."""
        if self.virtual_winner and self.live_winner:
            return self.virtual_winner == self.live_winner
        if not (self.virtual_winner or self.live_winner):
            return True
        v, live = self.virtual, self.live
        if v is None or live is None or not (np.isfinite(v) and np.isfinite(live)):
            return False
        return bool(np.sign(v) == np.sign(live)) or v == 0 or live == 0


@dataclass(frozen=True)
class Agreement:
    figures: tuple[FigureAgreement, ...]

    @property
    def count(self) -> int:
        return sum(f.agrees for f in self.figures)

    def describe(self) -> str:
        text = f"live agrees with virtual time on {self.count} of {len(self.figures)} figures"
        wrong = [f.figure for f in self.figures if not f.agrees]
        return text + (f" (not on {', '.join(wrong)})" if wrong else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "agrees": self.count,
            "of": len(self.figures),
            "figures": [
                {
                    "figure": f.figure,
                    "virtual_relative": f.virtual,
                    "live_relative": f.live,
                    "virtual_winner": f.virtual_winner,
                    "live_winner": f.live_winner,
                    "agrees": f.agrees,
                }
                for f in self.figures
            ],
        }


def agreement(virtual: Judged, live: Judged) -> Agreement:
    rows = []
    for name in FIGURES:
        v, li = virtual.by_name(name), live.by_name(name)
        rows.append(FigureAgreement(name, _rel(v.relative), _rel(li.relative), v.winner, li.winner))
    return Agreement(tuple(rows))


def _rel(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)
