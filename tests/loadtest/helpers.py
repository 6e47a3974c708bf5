from dataclasses import replace

from loadtest.workload import Arrival, LengthDist, Workload


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
