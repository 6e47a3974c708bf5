"""What a load test sends: the workload format, the schedule built from it, and prompt text."""

from loadtest.workload.format import builtin_workloads, load_workload, parse_workload
from loadtest.workload.model import (
    Arrival,
    LengthDist,
    Phase,
    SharedPrefix,
    Slo,
    Warmup,
    Workload,
    WorkloadError,
)

__all__ = [
    "Arrival",
    "LengthDist",
    "Phase",
    "SharedPrefix",
    "Slo",
    "Warmup",
    "Workload",
    "WorkloadError",
    "builtin_workloads",
    "load_workload",
    "parse_workload",
]
