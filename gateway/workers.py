"""GATEWAY_WORKERS > 1: several worker processes on one listening socket.

The parent has validated the settings and identified the replicas' kinds (gateway/cli.py);
then uvicorn's own supervisor (uvicorn.supervisors.Multiprocess, what `uvicorn --workers`
runs) binds the socket, spawns the workers and keeps them: a worker that dies or stops
answering its ping is restarted, SIGTERM or SIGINT drains and stops them all. Each worker
builds its app from `WorkerApp`, which the supervisor hands over pickled (the resolved
settings and replicas, secrets included, never through a file or the environment).

Added here: a worker's death is logged (`worker_died`) and its share of the pool gauges
dropped; a worker that cannot start (uvicorn's start-up failure, or three deaths in a row
each within FAST_DEATH_S of its start: a crash loop) stops the gateway with exit code 1
(uvicorn's parent would exit 0, or restart it forever); each worker dies with the parent
even when the parent is killed -9 (PR_SET_PDEATHSIG), so none is ever left behind; the
metrics directory that prometheus_client's multiprocess mode needs is private to the run
and removed at the end.
"""

import contextlib
import ctypes
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from gateway.app import create_app
from gateway.replicas_file import ReplicaEntry
from gateway.settings import GatewaySettings
from gateway.shared_view import forget
from turnout.logs import configure_logging, get_logger

# prometheus_client reads it when imported: the workers get it from the parent's environment.
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
_PR_SET_PDEATHSIG = 1
FAST_DEATH_S = 10.0
FAST_DEATHS_TO_STOP = 3


@dataclass(frozen=True)
class WorkerApp:
    """The app factory each worker calls (uvicorn's `factory=True`)."""

    settings: GatewaySettings
    specs: tuple[ReplicaEntry, ...]
    parent: int
    shared_dir: Path

    def __call__(self) -> FastAPI:
        _die_with_parent(self.parent)
        configure_logging(self.settings.log_level)
        # Every line this worker logs says which worker it is (tasks inherit the context).
        structlog.contextvars.bind_contextvars(worker=os.getpid())
        if os.environ.get(METRICS_DIR_VARIABLE) != str(self.shared_dir):
            raise RuntimeError(f"{METRICS_DIR_VARIABLE} must be {self.shared_dir} in a worker")
        return create_app(self.settings, list(self.specs), shared_dir=self.shared_dir)


def _die_with_parent(parent: int) -> None:
    """SIGTERM (a graceful stop) to this worker when the parent dies, however it dies."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


class _Supervisor(Multiprocess):
    """uvicorn's supervisor, telling why it stopped and who died."""

    def __init__(self, *args: Any, shared_dir: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shared_dir = shared_dir
        self.signalled = False
        self.fast_deaths = 0
        self.started_at: dict[int | None, float] = {}
        self.log = get_logger("gateway.workers")

    def _note_starts(self) -> None:
        now = time.monotonic()
        for process in self.processes:
            self.started_at.setdefault(process.pid, now)

    def init_processes(self) -> None:
        super().init_processes()
        self._note_starts()
        self.log.info(
            "workers_started", parent=os.getpid(), workers=[p.pid for p in self.processes]
        )

    def keep_subprocess_alive(self) -> None:
        before = list(self.processes)
        super().keep_subprocess_alive()
        now = time.monotonic()
        for old in before:
            if old.exitcode is None:
                continue
            assert old.pid is not None
            forget(self.shared_dir, old.pid)
            lived = now - self.started_at.pop(old.pid, now)
            self.fast_deaths = self.fast_deaths + 1 if lived < FAST_DEATH_S else 0
            replaced = old not in self.processes
            self.log.error(
                "worker_died",
                pid=old.pid,
                exitcode=old.exitcode,
                lived_s=round(lived, 1),
                restarted_as=self.processes[before.index(old)].pid if replaced else None,
            )
        self._note_starts()
        if self.fast_deaths >= FAST_DEATHS_TO_STOP and not self.should_exit.is_set():
            self.log.error("workers_keep_dying", deaths=self.fast_deaths, within_s=FAST_DEATH_S)
            self.should_exit.set()

    def handle_int(self) -> None:
        self.signalled = True
        super().handle_int()

    def handle_term(self) -> None:
        self.signalled = True
        super().handle_term()


def serve_workers(
    settings: GatewaySettings, specs: list[ReplicaEntry], server: dict[str, Any]
) -> int:
    """Run `settings.workers` workers until SIGTERM or SIGINT; the exit code: 0 when
    stopped by a signal, 1 when a worker could not start. `server`: uvicorn's options."""
    shared_dir = Path(tempfile.mkdtemp(prefix="turnout-gateway-metrics-"))
    previous = os.environ.get(METRICS_DIR_VARIABLE)
    os.environ[METRICS_DIR_VARIABLE] = str(shared_dir)
    try:
        factory = WorkerApp(settings, tuple(specs), os.getpid(), shared_dir)
        config = uvicorn.Config(factory, factory=True, workers=settings.workers, **server)
        supervisor = _Supervisor(config, sockets=[config.bind_socket()], shared_dir=shared_dir)
        supervisor.run()
    finally:
        shutil.rmtree(shared_dir, ignore_errors=True)
        with contextlib.suppress(KeyError):
            del os.environ[METRICS_DIR_VARIABLE]
        if previous is not None:
            os.environ[METRICS_DIR_VARIABLE] = previous
    if supervisor.signalled:
        get_logger("gateway.workers").info("workers_stopped")
        return 0
    get_logger("gateway.workers").error("worker_failed_to_start", hint="see its lines above")
    return 1
