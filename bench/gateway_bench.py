"""What the gateway adds over calling a replica directly, what one gateway process serves,
and whether it meets its speed targets (issue 12), against the floor of its own stack.

A fake replica that costs next to nothing (bench/fake_backend.py) and a raw keep-alive
HTTP client (bench/raw_client.py) share CPU 0; the proxy under test runs alone on CPU 1
(`taskset`, when there are two CPUs). Four phases: c=1 and c=64, non-streaming and
streaming. Every round runs each phase against the replica directly and through each
proxy, one after the other, in an order that rotates from round to round, so that the
figures compared come from the same minute of a shared machine. Reported: latency
p50/p99, what the proxy adds over direct (same round), time to a stream's first event,
requests per second, the proxy's CPU time (utime+stime from /proc) per request and per
streamed chunk; medians over rounds.

Proxies: `gateway` (the real one, `gateway` console script, configured as in production:
metrics, the JSON log line at info, round-robin routing, health checks and the metrics
poller all on; see `gateway_env`), `relay-asgi` (the bare plain-ASGI relay with aiohttp on
uvicorn: the floor of this stack), and the minimal FastAPI relays `relay-aiohttp`,
`relay-httpx` (bench/relay.py). `gateway@DIR` runs the gateway from the source tree DIR
(e.g. `git archive` of an earlier commit unpacked there) with this venv, to compare two
versions in one run. `gateway-wN` runs it with N workers (GATEWAY_WORKERS=N), all pinned to
the proxy's one CPU like the others: what the multi-worker mode costs per request, not
what more cores would serve.

    .venv/bin/python bench/gateway_bench.py [--proxies gateway,relay-asgi] [--rounds 3]
        [--requests 1000] [--duration 4] [--chunks 32] [--profile out.txt]
"""

import argparse
import asyncio
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_targets import PHASES, Runs, print_phases, print_targets  # noqa: E402
from pyspy_profile import print_top, record  # noqa: E402
from raw_client import HOST, PhaseResult, run_phase  # noqa: E402

from tests.procs import Proc, bin_path, free_port, start  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
PROFILE_S = 10.0


def cpu_seconds(pgid: int) -> float:
    """utime + stime of every process in the group (the proxy and any workers)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command: state ppid pgrp ...; utime and stime are fields 14 and 15.
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / TICKS


def pinned(cpu: int, argv: list[str]) -> list[str]:
    if (os.cpu_count() or 1) >= 2 and Path("/usr/bin/taskset").exists():
        return ["taskset", "-c", str(cpu), *argv]
    return argv


def gateway_env(upstream: str, port: int) -> dict[str, str]:
    """The gateway's configuration in this bench: the defaults, which keep everything on
    (metrics, the JSON log line at info, health checks every 2 s, the poller every 1 s),
    with round-robin routing. tests/gateway/test_bench_config.py checks that it is so."""
    return {
        "GATEWAY_REPLICAS": upstream,
        "GATEWAY_PORT": str(port),
        "GATEWAY_HOST": HOST,
        "GATEWAY_STRATEGY": "round_robin",
        "GATEWAY_LOG_LEVEL": "info",
    }


def start_proxy(kind: str, upstream: str) -> Proc:
    port = free_port()
    if kind == "gateway" or kind.startswith("gateway-w"):
        # gateway-wN: N worker processes (GATEWAY_WORKERS), all on the proxy's one CPU.
        env = gateway_env(upstream, port)
        if kind != "gateway":
            env["GATEWAY_WORKERS"] = kind.removeprefix("gateway-w")
        argv = pinned(1, [bin_path("gateway")])
        return start(argv, port=port, env=env, timeout=30)
    if kind.startswith("gateway@"):
        # Another version of the gateway, from a source tree (e.g. `git archive` of a commit),
        # run with this venv: for before/after comparisons within one run.
        source = str(Path(kind.removeprefix("gateway@")).resolve())
        code = f"import sys; sys.path.insert(0, {source!r}); from gateway.cli import main; main()"
        argv = pinned(1, [sys.executable, "-c", code])
        return start(argv, port=port, env=gateway_env(upstream, port), timeout=30)
    client = kind.removeprefix("relay-")
    argv = [sys.executable, str(ROOT / "bench" / "relay.py"), "--client", client]
    argv += ["--upstream", upstream, "--port", str(port)]
    return start(pinned(1, argv), port=port, timeout=30)


async def measure_phase(
    port: int, pgid: int | None, concurrency: int, stream: bool, args: argparse.Namespace
) -> PhaseResult:
    before = cpu_seconds(pgid) if pgid else 0.0
    result = await run_phase(
        port, concurrency, stream, requests=args.requests, duration=args.duration
    )
    result.cpu = (cpu_seconds(pgid) - before) if pgid else 0.0
    return result


def run_rounds(backend_port: int, proxies: dict[str, Proc], args: argparse.Namespace) -> Runs:
    """Each round, each phase: direct and every proxy back to back, the order rotating."""
    targets: dict[str, tuple[int, int | None]] = {"direct": (backend_port, None)}
    targets.update({kind: (proc.port, proc.popen.pid) for kind, proc in proxies.items()})
    runs: Runs = {kind: [] for kind in targets}
    kinds = list(targets)
    for round_no in range(args.rounds):
        print(f"round {round_no + 1}/{args.rounds}", file=sys.stderr)
        order = kinds[round_no % len(kinds) :] + kinds[: round_no % len(kinds)]
        results: dict[str, dict[str, PhaseResult]] = {kind: {} for kind in kinds}
        for name, concurrency, stream in PHASES:
            for kind in order:
                port, pgid = targets[kind]
                results[kind][name] = asyncio.run(
                    measure_phase(port, pgid, concurrency, stream, args)
                )
        for kind in kinds:
            runs[kind].append(results[kind])
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxies", default="gateway,relay-asgi")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=1000, help="per c=1 phase")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per c=64 phase")
    parser.add_argument("--chunks", type=int, default=32, help="events per streamed response")
    parser.add_argument(
        "--profile",
        type=Path,
        help=f"after the rounds, record the gateway with py-spy for {PROFILE_S:g} s at c=64 "
        "(non-streaming), write its collapsed stacks here and print the top functions",
    )
    args = parser.parse_args()
    load_before = _load_average()
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {0})

    backend_port = free_port()
    backend_argv = [sys.executable, str(ROOT / "bench" / "fake_backend.py")]
    backend_argv += ["--port", str(backend_port), "--chunks", str(args.chunks)]
    backend = start(pinned(0, backend_argv), port=backend_port)
    upstream = f"http://{HOST}:{backend_port}"
    proxies: dict[str, Proc] = {}
    try:
        for kind in [p for p in args.proxies.split(",") if p]:
            try:
                proxies[kind] = start_proxy(kind, upstream)
            except (RuntimeError, TimeoutError, FileNotFoundError) as exc:
                print(f"skipping {kind}: {str(exc).splitlines()[0]}", file=sys.stderr)
        runs = run_rounds(backend_port, proxies, args)
        profiled = False
        if args.profile is not None and "gateway" in proxies:
            profiled = record(proxies["gateway"], args.profile, lambda: _load(proxies["gateway"]))
    finally:
        for proc in proxies.values():
            proc.stop()
        backend.stop()
    print(
        f"\ngateway_bench: {args.rounds} rounds, {args.requests} requests per c=1 phase, "
        f"{args.duration:g} s per c=64 phase, {args.chunks} events per stream; "
        f"CPUs: {os.cpu_count()}, proxy pinned to CPU 1; load average "
        f"before: {load_before}, after: {_load_average()}\n"
    )
    print_phases(runs)
    print_targets(runs)
    if profiled:
        print(f"\nprofile of the gateway at c=64, non-streaming, {PROFILE_S:g} s ({args.profile}):")
        print_top(args.profile)


def _load(proc: Proc) -> PhaseResult:
    return asyncio.run(run_phase(proc.port, 64, False, requests=0, duration=PROFILE_S))


def _load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


if __name__ == "__main__":
    main()
