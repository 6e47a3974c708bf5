import subprocess
from dataclasses import replace
from pathlib import Path

from loadtest.workload import Arrival, LengthDist, Workload
from tests.procs import bin_path


def small_workload(**changes: object) -> Workload:
    """Two models, 40-token prompts, 10 output tokens, 20 req/s, 6 requests, no warm-up."""
    base = Workload(
        name="small",
        description="test",
        models=(("model-a", 0.5), ("model-b", 0.5)),
        prompt_tokens=LengthDist("fixed", value=40),
        output_tokens=LengthDist("fixed", value=10),
        arrival=Arrival("poisson", rate=20.0),
        requests=6,
        timeout_s=10.0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


# `loadtest study` on two tiny replicas, one load they sustain and one they do not: seconds.
TINY_STUDY = (
    "study",
    *("--workload", "chat-mixed", "--replicas", "2", "--profile", "tiny"),
    *("--strategies", "round_robin,p2c", "--loads", "0.6,1.6"),
    *("--requests", "300", "--poll-interval", "0.1"),
)


def loadtest(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the `loadtest` CLI in `cwd`; its output and exit code (a minute at most)."""
    return subprocess.run(
        [bin_path("loadtest"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
    )
