"""Chaos under load: replicas killed, hung, slowed and restarted on a schedule while streams
flow through the gateway. Prints what became of every request and what the gateway did.

Starts --replicas simulated replicas (`vllm-sim serve`, Llama-3.1-8B on an H100 by default:
about 10 ms a token, so streams last seconds and faults catch some mid-way) and a gateway
(queue_depth, health checks every --health-interval s), sends --rate streams per second
for --duration seconds, and on the way (times are fractions of the duration):

    0.15 kill sim0 (SIGKILL)          0.55 restart sim0 on its port
    0.30 hang sim1 (SIGSTOP)          0.65 resume sim1 (SIGCONT)
    0.45 slow sim2 (steps 5x longer)  0.80 sim2 back to normal speed

Only processes this script started are signalled; a hung one is resumed before it is
stopped. What must hold: every request that had not started streaming is served (by
another replica if need be); a stream cut after it started ends with an SSE error event;
no stream ends silently; the gateway's in-flight count returns to 0. Prints the counts and
the gateway's own (retries, upstream errors by kind, ejections); --json writes them.

    .venv/bin/python bench/chaos.py [--duration 60] [--rate 20] [--replicas 4] [--json f]
"""

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.gateway.load import Outcome, drive  # noqa: E402
from tests.procs import Proc, bin_path, free_port, start  # noqa: E402

MODEL = "sim-model"


class Fleet:
    """The replicas this script started, and the faults done to them."""

    def __init__(self, count: int, profile: str) -> None:
        self.profile = profile
        self.procs: list[Proc] = []
        for i in range(count):
            port = free_port()
            self.procs.append(start(self.argv(port, i), port=port))
        self.stopped: set[int] = set()
        self.log: list[str] = []
        self.loop_time = 0.0

    def argv(self, port: int, seed: int) -> list[str]:
        return [bin_path("vllm-sim"), "serve", "--model", MODEL, "--profile", self.profile,
                "--port", str(port), "--seed", str(seed), "--log-level", "warning"]  # fmt: skip

    def kill(self, i: int) -> None:
        os.killpg(self.procs[i].popen.pid, signal.SIGKILL)
        self.procs[i].popen.wait()
        self.log.append(f"kill sim{i}")

    def hang(self, i: int) -> None:
        os.killpg(self.procs[i].popen.pid, signal.SIGSTOP)
        self.stopped.add(i)
        self.log.append(f"hang sim{i}")

    def resume(self, i: int) -> None:
        os.killpg(self.procs[i].popen.pid, signal.SIGCONT)
        self.stopped.discard(i)
        self.log.append(f"resume sim{i}")

    async def restart(self, i: int) -> None:
        port = self.procs[i].port
        self.procs[i] = await asyncio.to_thread(start, self.argv(port, i), port=port)
        self.log.append(f"restart sim{i}")

    async def slow(self, i: int, factor: float) -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            body = {"step_multiplier": factor}
            (await client.post(self.procs[i].url + "/sim/faults", json=body)).raise_for_status()
        self.log.append(f"sim{i} steps x{factor:g}")

    def stop(self) -> None:
        for i in list(self.stopped):
            self.resume(i)
        for proc in self.procs:
            proc.stop()


def gateway_counts(url: str) -> dict[str, Any]:
    text = httpx.get(url + "/metrics", timeout=5).text
    retries = 0.0
    errors: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "turnout_retries_total":
                retries += sample.value
            elif sample.name == "turnout_upstream_errors_total":
                kind = sample.labels["kind"]
                errors[kind] = errors.get(kind, 0) + sample.value
    replicas = httpx.get(url + "/admin/replicas", timeout=5).json()["replicas"]
    return {
        "retries": int(retries),
        "upstream_errors": {k: int(v) for k, v in sorted(errors.items())},
        "in_flight_after": sum(r["in_flight"] for r in replicas),
    }


def classify(outcomes: list[Outcome]) -> dict[str, Any]:
    served = [o for o in outcomes if o.ok]
    cut = [o for o in outcomes if o.status == 200 and o.ttfb is not None and o.sse_error]
    silent = [o for o in outcomes if o.status == 200 and not o.done and not o.sse_error]
    failed = [o for o in outcomes if not o.ok and o not in cut and o not in silent]
    ttfbs = sorted(o.ttfb for o in served if o.ttfb is not None)
    return {
        "sent": len(outcomes),
        "served": len(served),
        "streams_cut_with_sse_error": len(cut),
        "streams_ended_silently": len(silent),
        "errors_seen_by_clients": len(failed),
        "client_errors": sorted({f"{o.status} {o.failure}".strip() for o in failed}),
        "ttfb_p50_s": round(statistics.median(ttfbs), 3) if ttfbs else None,
        "ttfb_max_s": round(ttfbs[-1], 3) if ttfbs else None,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    fleet = Fleet(args.replicas, args.profile)
    gw: Proc | None = None
    try:
        port = free_port()
        env = {
            "GATEWAY_REPLICAS": ",".join(p.url for p in fleet.procs),
            "GATEWAY_STRATEGY": "queue_depth",
            "GATEWAY_HEALTH_INTERVAL": str(args.health_interval),
            "GATEWAY_POLL_INTERVAL": "0.5",
            "GATEWAY_IDLE_TIMEOUT": "5",
            "GATEWAY_LOG_LEVEL": "warning",
        }
        gw = start([bin_path("gateway"), "--port", str(port)], port=port, env=env)
        d = args.duration
        events = [
            (0.15 * d, lambda: fleet.kill(0)),
            (0.30 * d, lambda: fleet.hang(1)),
            (0.45 * d, lambda: fleet.slow(2, 5.0)),
            (0.55 * d, lambda: fleet.restart(0)),
            (0.65 * d, lambda: fleet.resume(1)),
            (0.80 * d, lambda: fleet.slow(2, 1.0)),
        ]
        outcomes = asyncio.run(
            drive(
                gw.url,
                model=MODEL,
                rate=args.rate,
                duration=d,
                max_tokens=args.max_tokens,
                client_timeout=60.0,
                events=events,
            )
        )
        figures = {"schedule": fleet.log, **classify(outcomes), **gateway_counts(gw.url)}
        return figures
    finally:
        if gw is not None:
            gw.stop()
        fleet.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=20.0, help="streams per second")
    parser.add_argument("--max-tokens", type=int, default=128, help="tokens per stream")
    parser.add_argument("--profile", default="llama-3.1-8b-h100", help="the replicas' profile")
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--health-interval", type=float, default=1.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    figures = run(args)
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
