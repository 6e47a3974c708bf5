"""A fleet's saturation rate for a workload, found in virtual time.

For each model, its replicas are flooded with that model's share of the workload (every
request at once, far beyond what they can take) and their sustained throughput is read off
the middle of the drain, where the batch is full: 20% to 80% of the completions. That
throughput is the most requests per second the model's replicas can finish. The workload
sends each model its share of the traffic, so the fleet saturates when the first model
does: at min over models of (throughput / share). A workload whose mix moves in phases
saturates when the first model does in its busiest phase: its share there counts.
`--load 0.85` is 85% of that rate.
"""

from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from loadtest.playback.fleets import VirtualFleet
from loadtest.playback.play import play
from loadtest.workload.model import Workload
from loadtest.workload.schedule import build_schedule

# Enough requests per model to fill every replica's batch several times over.
FLOOD_REQUESTS = 2000
# Far beyond any fleet's capacity: the whole flood arrives within a fraction of a second.
FLOOD_RATE = 100_000.0


@dataclass(frozen=True)
class Capacity:
    """Requests per second a fleet sustains on a workload."""

    # The workload's mix: the rate at which the first model saturates.
    rate: float
    # Requests per second each model's replicas finish when flooded.
    per_model: dict[str, float]
    # The model that saturates first.
    bottleneck: str

    def describe(self) -> str:
        models = ", ".join(
            f"{model.split('/')[-1]} {rate:.1f}" for model, rate in self.per_model.items()
        )
        first = self.bottleneck.split("/")[-1]
        return (
            f"saturates at {self.rate:.1f} req/s of this mix (first {first}; each model's "
            f"replicas alone: {models} req/s)"
        )


def capacity(
    fleet: VirtualFleet, workload: Workload, *, seed: int, requests: int = FLOOD_REQUESTS
) -> Capacity:
    """The saturation rate of `fleet` for `workload` (see the module docstring)."""
    per_model: dict[str, float] = {}
    for model, _ in workload.models:
        alone = replace(workload, models=((model, 1.0),), phases=())
        schedule = build_schedule(alone, seed=seed, rate=FLOOD_RATE, requests=requests)
        played = play(fleet, schedule, seed=seed)
        ends = [r.sent_s + r.e2e_s for r in played.records if r.e2e_s is not None]
        per_model[model] = sustained_rate(ends)
    peak = workload.peak_shares()
    by_share = {model: per_model[model] / peak[model] for model, _ in workload.models}
    bottleneck = min(by_share, key=lambda m: by_share[m])
    return Capacity(by_share[bottleneck], per_model, bottleneck)


def sustained_rate(ends: Iterable[float]) -> float:
    """Events per second between the 20th and 80th percentile event: the pace of the middle
    of a run, away from its ramp-up and its drain (live suites read their offered and
    completed rates this way too)."""
    times = np.sort(np.fromiter(ends, dtype=float))
    if len(times) < 10:
        raise ValueError("too few requests finished to measure a throughput")
    low, high = int(len(times) * 0.2), int(len(times) * 0.8)
    span = times[high] - times[low]
    return float((high - low) / span) if span > 0 else float("inf")
