"""Benchmark suites: a workload swept over any of its fields (or searched for the highest rate
or concurrency meeting targets) against URLs or environments, with warm-up, cool-down, stop
conditions, resume, GPU and replica telemetry, and one results directory with a report."""
