"""A deployed layout over HTTP (the reference six replicas, or a colocated fleet's eight), in a
few worker processes.

Each worker runs one uvicorn server on several listening sockets, one per
replica, and routes each connection to its replica's app by the local port.
Replicas that share an elastic KV pool or a GPU always land in the same worker (pools and
GPUs are in-process objects). The parent starts the workers, waits until every replica
answers, prints where each listens, and on SIGINT/SIGTERM stops them all.
"""

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import orjson
import uvicorn

from loadtest.sim.gpus import SharedGpu
from loadtest.sim.kvcache import SharedKVPool
from loadtest.sim.layout import deployment, placements
from loadtest.sim.profiles import DEFAULT_GPU_MEMORY_UTILIZATION
from loadtest.sim.replica import ReplicaConfig, elastic_pool
from loadtest.sim.server import SimServer, create_app
from turnout.asgi import Receive, Scope, Send

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class FleetReplica:
    index: int
    port: int
    config: ReplicaConfig


def fleet_replicas(
    name: str,
    base_port: int,
    time_scale: float,
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION,
    remap: Mapping[str, str] | None = None,
) -> list[FleetReplica]:
    """Fleet `name`'s layout deployed its way (loadtest.sim.layout): elastic replicas share
    one pool per GPU (group), replicas on one GPU its time, and each engine gets its share of
    `gpu_memory_utilization`. `remap` puts it on other hardware (layout.on_hardware)."""
    deployed = deployment(name)
    replicas = []
    for index, place in enumerate(placements(name, gpu_memory_utilization, remap)):
        config = ReplicaConfig(
            model=place.seat.model,
            profile=place.seat.profile,
            prefix_caching=deployed.prefix_caching,
            kv_mode=deployed.kv_mode,
            kv_pool=place.kv_pool,
            gpu=place.gpu,
            gpu_memory_utilization=place.memory_share,
            max_cached_tokens=deployed.max_cached_tokens,
            time_scale=time_scale,
            seed=index,
        )
        replicas.append(FleetReplica(index, base_port + index, config))
    return replicas


def partition(replicas: Sequence[FleetReplica], processes: int) -> list[list[FleetReplica]]:
    """Spread replicas over at most `processes` groups, keeping each KV pool and each shared
    GPU in one group."""
    by_pool: dict[str, list[FleetReplica]] = {}
    for replica in replicas:
        config = replica.config
        key = config.kv_pool or config.gpu or f"replica-{replica.index}"
        by_pool.setdefault(key, []).append(replica)
    groups: list[list[FleetReplica]] = [[] for _ in range(max(1, processes))]
    for members in sorted(by_pool.values(), key=lambda m: m[0].index):
        min(groups, key=len).extend(members)
    return [group for group in groups if group]


# -- the worker: several replicas on one event loop ------------------------------------


class PortDispatch:
    """An ASGI app that hands each connection to the replica listening on its local port."""

    def __init__(self, apps: dict[int, SimServer]) -> None:
        self.apps = apps
        self._watchdog: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        await self.apps[scope["server"][1]](scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                for app in self.apps.values():
                    await app.startup()
                self._watchdog = asyncio.get_running_loop().create_task(_exit_with_parent())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._watchdog is not None:
                    self._watchdog.cancel()
                for app in self.apps.values():
                    await app.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _exit_with_parent() -> None:
    """A worker whose parent died (even by SIGKILL) stops itself instead of lingering."""
    parent = os.getppid()
    while os.getppid() == parent:  # noqa: ASYNC110  (no event tells a child its parent died)
        await asyncio.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)


def run_worker(spec: list[dict[str, Any]], host: str) -> None:
    from loadtest.sim.cli import uvicorn_config
    from loadtest.sim.faults import Faults

    configs = [
        ReplicaConfig(**{**item["config"], "faults": Faults(**item["config"]["faults"])})
        for item in spec
    ]
    residents: dict[str, list[ReplicaConfig]] = {}
    for config in configs:
        if config.kv_mode == "elastic":
            residents.setdefault(config.kv_pool or config.model, []).append(config)
    pools: dict[str, SharedKVPool] = {name: elastic_pool(on) for name, on in residents.items()}
    gpus = {config.gpu: SharedGpu(config.gpu) for config in configs if config.gpu is not None}
    apps: dict[int, SimServer] = {}
    sockets: list[socket.socket] = []
    for item, config in zip(spec, configs, strict=True):
        pool = pools[config.kv_pool or config.model] if config.kv_mode == "elastic" else None
        gpu = gpus[config.gpu] if config.gpu is not None else None
        apps[item["port"]] = create_app(config, pool, gpu)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, item["port"]))
        except OSError as exc:
            print(f"vllm-sim: cannot listen on {host}:{item['port']}: {exc}", file=sys.stderr)
            sys.exit(1)
        sockets.append(sock)
    server = uvicorn.Server(uvicorn_config(PortDispatch(apps), host))
    server.run(sockets=sockets)


# -- the parent ------------------------------------------------------------------------


async def _wait_ready(urls: Sequence[str], workers: Sequence[asyncio.subprocess.Process]) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT
    async with httpx.AsyncClient(timeout=1.0) as client:
        pending = list(urls)
        while pending and loop.time() < deadline:
            if any(worker.returncode is not None for worker in workers):
                return False
            url = pending[0]
            try:
                if (await client.get(url + "/health")).status_code == 200:
                    pending.pop(0)
                    continue
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
        return not pending


async def _stop(workers: Sequence[asyncio.subprocess.Process]) -> None:
    for worker in workers:
        if worker.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            async with asyncio.timeout(STOP_TIMEOUT):  # not wait_for: see gateway/poller.py
                await worker.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                worker.kill()
            await worker.wait()


async def run_fleet(
    name: str,
    base_port: int,
    time_scale: float,
    host: str,
    processes: int,
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION,
    remap: Mapping[str, str] | None = None,
) -> int:
    """Start the fleet, print where it listens, serve until a signal; the exit code."""
    replicas = fleet_replicas(name, base_port, time_scale, gpu_memory_utilization, remap)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    workers: list[asyncio.subprocess.Process] = []
    try:
        for group in partition(replicas, processes):
            spec = [{"port": r.port, "config": asdict(r.config)} for r in group]
            workers.append(
                await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "loadtest.sim.fleet", host, orjson.dumps(spec).decode()
                )
            )
        urls = [f"http://{host}:{r.port}" for r in replicas]
        ready = asyncio.ensure_future(_wait_ready(urls, workers))
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            ready.cancel()
            return 0
        if not ready.result():
            print(f"vllm-sim: fleet {name} did not come up", file=sys.stderr, flush=True)
            return 1
        for replica, url in zip(replicas, urls, strict=True):
            print(f"replica {replica.index} {replica.config.model} {url}", flush=True)
        print("fleet ready", flush=True)
        exits = [asyncio.ensure_future(worker.wait()) for worker in workers]
        await asyncio.wait({stopped, *exits}, return_when=asyncio.FIRST_COMPLETED)
        if not stop.is_set():
            print("vllm-sim: a fleet worker exited; stopping the fleet", file=sys.stderr)
            return 1
        return 0
    finally:
        await _stop(workers)


if __name__ == "__main__":
    run_worker(orjson.loads(sys.argv[2]), sys.argv[1])
