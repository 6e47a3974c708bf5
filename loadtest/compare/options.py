"""What `loadtest compare` is asked to do, and its defaults (the README's main job)."""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from loadtest.sweep.points import span

Mode = Literal["auto", "virtual", "live"]

# The live check of the default job on a 2-core machine: local fleets play TIME_SCALE times
# slower than real hardware, at most LIVE_WALL_RATE requests per second of wall time (the
# generator, gateway and six replicas share two cores: above ~25 req/s the generator's own
# event loop sends late), for LIVE_DURATION_S seconds of arrivals, each side twice (A B B A).
TIME_SCALE = 1.0
LIVE_WALL_RATE = 24.0
LIVE_DURATION_S = 10.0
LIVE_LOAD = 0.85
REPEATS = 2
# URL environments have no known saturation rate: a plain rate then.
URL_RATE = 25.0
URL_DURATION_S = 30.0
# Virtual requests per load: a sweep's points (a p99 rests on 40 requests beyond it), and a
# single load, where a p99 difference of ~10% needs ~20,000 requests to clear the noise.
SWEEP_REQUESTS = 4000
POINT_REQUESTS = 20000
# --explain without --load: the chain plays at this share of A's saturation rate, loaded
# enough for queues and KV to matter, short of overload.
EXPLAIN_LOAD = 0.8


@dataclass(frozen=True)
class Sweep:
    """Loads from `low` to `high` (fractions of A's saturation rate) in `points` steps."""

    low: float = 0.3
    high: float = 0.95
    points: int = 8

    @classmethod
    def parse(cls, spec: str) -> "Sweep":
        """'0.3:0.95:8' -> Sweep(0.3, 0.95, 8); ValueError naming what is allowed."""
        try:
            low, high, points = spec.split(":")
            sweep = cls(float(low), float(high), int(points))
        except ValueError:
            raise ValueError(
                f"--sweep {spec!r}: expected LOW:HIGH:POINTS, e.g. 0.3:0.95:8"
            ) from None
        if not 0 < sweep.low < sweep.high or sweep.points < 2:
            raise ValueError(f"--sweep {spec!r}: need 0 < LOW < HIGH and POINTS >= 2")
        return sweep

    def loads(self) -> list[float]:
        return [round(load, 4) for load in span(self.low, self.high, points=self.points)]


@dataclass(frozen=True)
class CompareOptions:
    workload: str = "chat-mixed"
    # auto: a virtual sweep and a live check when both environments are local, else live.
    mode: Mode = "auto"
    # Requests per second (virtual: hardware time; live: wall time), or a share of A's
    # saturation rate; at most one of the two.
    rate: float | None = None
    load: float | None = None
    sweep: Sweep | None = None
    concurrency: int | None = None
    duration: float | None = None
    requests: int | None = None
    seed: int | None = None
    repeats: int = REPEATS
    # Applied to local fleets whose environment names no time scale of its own.
    time_scale: float = TIME_SCALE
    environments_file: Path | None = None
    out: Path = Path("results")
    ready_timeout_s: float = 90.0
    resamples: int = 1000
    sample_interval_s: float = 0.5
    api_key: str | None = None
    min_effect: float = 0.05
    # Requests per virtual load; None: SWEEP_REQUESTS in a sweep, POINT_REQUESTS for one load.
    virtual_requests: int | None = None
    # --tokenizer values (NAME_OR_PATH or MODEL=NAME_OR_PATH) live prompts are sized with;
    # else the environments' own, else the simulator's approximate tokenizer.
    tokenizer: tuple[str, ...] = ()
    # Attribute the difference along the chain of one-change steps from A to B (virtual time).
    explain: bool = False
