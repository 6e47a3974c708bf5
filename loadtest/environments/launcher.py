"""Start a local environment (simulated replicas + gateway) on free ports, and always stop it.

Every process is started in its own session, so its process group holds it and whatever it
spawns; stopping sends SIGTERM to the group, then SIGKILL to whatever is left after a grace
period. `launch` is a context manager: the environment is torn down on success, on error and
on Ctrl-C (a second Ctrl-C during teardown is ignored so that teardown completes).
"""

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from gateway.settings import GatewaySettings
from loadtest.environments.catalog import Environment
from loadtest.sim.layout import seats
from turnout.logs import get_logger


def _log() -> Any:
    # Asked for at each use: a logger bound at import would predate configure_logging.
    return get_logger(__name__)


# Started processes run at this niceness: when the machine is short of CPU, the load
# generator (which must send on time) goes first and the servers are the ones that slow
# down, as they would on their own hardware. Children inherit it.
SERVER_NICENESS = 5
_POLL_S = 0.1
_GRACE_S = 5.0


class LaunchError(RuntimeError):
    """An environment that could not be started; the message says which process and why."""


@dataclass(frozen=True)
class Endpoint:
    """A replica of a started environment."""

    name: str
    model: str
    url: str


@dataclass
class Started:
    """A running environment: send requests to `url`; the rest is for sampling and reports."""

    name: str
    url: str
    replicas: list[Endpoint] = field(default_factory=list)
    # Where GET /admin/replicas answers (a gateway we started), else None.
    admin_url: str | None = None
    time_scale: float | None = None
    pids: list[int] = field(default_factory=list)


def console_script(name: str) -> str:
    """The console script installed beside this interpreter, else the one on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise LaunchError(f"`{name}` is not installed (looked beside {sys.executable} and on PATH)")
    return found


class ManagedProcess:
    """A child process in its own process group, with its output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, env: dict[str, str]):
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as sink:
            self.popen = subprocess.Popen(
                list(argv),
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **env},
                start_new_session=True,
            )
        with suppress(OSError):  # the process may already have exited
            os.setpriority(os.PRIO_PROCESS, self.popen.pid, SERVER_NICENESS)
        _log().info("process_started", process=name, pid=self.popen.pid, argv=" ".join(argv))

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exited(self) -> int | None:
        return self.popen.poll()

    def output_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def group_alive(self) -> bool:
        self.popen.poll()  # reap the leader so a zombie does not count
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def stop(self, grace_s: float = _GRACE_S) -> None:
        """SIGTERM the whole group, SIGKILL what is left after `grace_s`."""
        if not self.group_alive():
            return
        _signal_group(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while self.group_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.group_alive():
            _log().warning("process_killed", process=self.name, pid=self.pid)
            _signal_group(self.pid, signal.SIGKILL)
            deadline = time.monotonic() + grace_s
            while self.group_alive() and time.monotonic() < deadline:
                time.sleep(0.05)
        _log().info("process_stopped", process=self.name, pid=self.pid, code=self.popen.returncode)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_port_run(host: str, count: int, rng: random.Random) -> int:
    """A base port with `count` consecutive free ports, below the ephemeral range."""
    for _ in range(200):
        base = rng.randrange(20000, 32000 - count)
        if all(_port_free(host, base + i) for i in range(count)):
            return base
    raise LaunchError(f"found no {count} consecutive free ports on {host}")


def sim_flags(env: Environment) -> list[str]:
    flags = ["--time-scale", f"{env.time_scale:g}"] if env.time_scale is not None else []
    if env.gpu_memory_utilization is not None:
        flags += ["--gpu-memory-utilization", f"{env.gpu_memory_utilization:g}"]
    return flags


def gateway_intervals(env: Environment) -> dict[str, str]:
    """The gateway's poll and health intervals, stretched by the fleet's time scale: a
    fleet F times slower than the hardware must be watched F times less often, or its
    gateway would see fresher metrics than it would on GPUs."""
    scale = env.time_scale or 1.0
    defaults = GatewaySettings.model_fields
    poll, health = defaults["poll_interval"].default, defaults["health_interval"].default
    return {
        "GATEWAY_POLL_INTERVAL": f"{poll * scale:g}",
        "GATEWAY_HEALTH_INTERVAL": f"{health * scale:g}",
    }


def _wait_fleet(proc: ManagedProcess, deadline: float) -> list[Endpoint]:
    """Read `replica <i> <model> <url>` lines until `fleet ready` appears in the log."""
    while time.monotonic() < deadline:
        text = proc.log_path.read_text(errors="replace")
        lines = [line.split() for line in text.splitlines()]
        if any(parts[:2] == ["fleet", "ready"] for parts in lines):
            return [
                Endpoint(name=p[3].split("//", 1)[-1], model=p[2], url=p[3])
                for p in lines
                if len(p) == 4 and p[0] == "replica"
            ]
        if proc.exited() is not None:
            raise LaunchError(f"{proc.name} exited with {proc.exited()}:\n{proc.output_tail()}")
        time.sleep(_POLL_S)
    raise LaunchError(f"{proc.name} not ready before the deadline:\n{proc.output_tail()}")


def _wait_http(proc: ManagedProcess, url: str, deadline: float, *, status: int = 200) -> None:
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if proc.exited() is not None:
                raise LaunchError(f"{proc.name} exited with {proc.exited()}:\n{proc.output_tail()}")
            try:
                if client.get(url).status_code == status:
                    return
            except httpx.TransportError:
                pass
            time.sleep(_POLL_S)
    raise LaunchError(f"{proc.name} did not answer {url} in time:\n{proc.output_tail()}")


def _wait_gateway_sees(proc: ManagedProcess, url: str, count: int, deadline: float) -> None:
    """Until the gateway reports `count` healthy replicas with their models known."""
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if proc.exited() is not None:
                raise LaunchError(f"{proc.name} exited with {proc.exited()}:\n{proc.output_tail()}")
            try:
                answer = client.get(url + "/admin/replicas")
                if answer.status_code == 404:
                    return  # a gateway without the admin API: /health was enough
                replicas = answer.json().get("replicas", [])
                healthy = [r for r in replicas if r.get("healthy") and r.get("models")]
                if len(healthy) >= count:
                    return
            except (httpx.TransportError, ValueError):
                pass
            time.sleep(_POLL_S)
    raise LaunchError(f"{proc.name} did not see {count} healthy replicas in time")


def _start_fleet(
    env: Environment, procs: list[ManagedProcess], log_dir: Path, host: str, deadline: float
) -> list[Endpoint]:
    rng = random.Random()
    for attempt in range(3):
        base = free_port_run(host, len(seats(str(env.fleet))), rng)
        argv = [console_script("vllm-sim"), "fleet", str(env.fleet)]
        argv += ["--base-port", str(base), "--host", host, *sim_flags(env)]
        argv += [f"--profile={old}={new}" for old, new in env.profiles.items()]
        proc = ManagedProcess(f"fleet {env.fleet}", argv, log_dir / "fleet.log", {})
        procs.append(proc)
        try:
            return _wait_fleet(proc, deadline)
        except LaunchError as exc:
            # Another process may have taken one of the ports meanwhile: try other ports.
            if "address already in use" not in str(exc).lower() or attempt == 2:
                raise
            procs.remove(proc)
            proc.stop()
    raise AssertionError("unreachable")


def _start_replicas(
    env: Environment, procs: list[ManagedProcess], log_dir: Path, host: str, deadline: float
) -> list[Endpoint]:
    started: list[tuple[ManagedProcess, Endpoint]] = []
    for i, spec in enumerate(env.replicas):
        port = free_port(host)
        argv = [console_script("vllm-sim"), "serve", "--model", spec.model]
        argv += ["--profile", spec.profile, "--host", host, "--port", str(port)]
        argv += [*sim_flags(env), *spec.args]
        proc = ManagedProcess(f"replica {i}", argv, log_dir / f"replica-{i}.log", {})
        procs.append(proc)
        model = spec.alias or spec.model
        started.append((proc, Endpoint(f"{host}:{port}", model, f"http://{host}:{port}")))
    for proc, endpoint in started:
        # /v1/models: every simulated server has it (Ollama and llama-cpp-python have no /health).
        _wait_http(proc, endpoint.url + "/v1/models", deadline)
    return [endpoint for _, endpoint in started]


def _replicas_file(env: Environment, replicas: list[Endpoint], log_dir: Path) -> Path | None:
    """A gateway replicas file giving each aliased replica its alias; None when none has one."""
    if not any(spec.alias for spec in env.replicas):
        return None
    entries = []
    for spec, endpoint in zip(env.replicas, replicas, strict=True):
        entry: dict[str, Any] = {"url": endpoint.url}
        if spec.alias and spec.alias != spec.model:
            entry["aliases"] = {spec.alias: spec.model}
        entries.append(entry)
    path = log_dir / "replicas.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"replicas": entries}))
    return path


def _start_gateway(
    env: Environment,
    replicas: list[Endpoint],
    procs: list[ManagedProcess],
    log_dir: Path,
    host: str,
    deadline: float,
) -> str:
    port = free_port(host)
    listed = _replicas_file(env, replicas, log_dir)
    where = (
        {"GATEWAY_REPLICAS": ",".join(r.url for r in replicas)}
        if listed is None
        else {"GATEWAY_REPLICAS_FILE": str(listed)}
    )
    variables = {
        **where,
        "GATEWAY_STRATEGY": env.strategy,
        "GATEWAY_HOST": host,
        "GATEWAY_PORT": str(port),
        **gateway_intervals(env),
        **env.gateway_env,
    }
    proc = ManagedProcess(
        "gateway", [console_script("gateway")], log_dir / "gateway.log", variables
    )
    procs.append(proc)
    url = f"http://{host}:{port}"
    _wait_http(proc, url + "/health", deadline)
    _wait_gateway_sees(proc, url, len(replicas), deadline)
    return url


@contextmanager
def launch(
    env: Environment,
    *,
    log_dir: Path,
    host: str = "127.0.0.1",
    ready_timeout_s: float = 60.0,
) -> Iterator[Started]:
    """Start `env` (nothing to start for a URL), yield where it listens, always stop it."""
    if env.url is not None:
        yield Started(name=env.name, url=env.url, admin_url=env.url)
        return
    deadline = time.monotonic() + ready_timeout_s
    procs: list[ManagedProcess] = []
    try:
        t0 = time.monotonic()
        if env.fleet is not None:
            replicas = _start_fleet(env, procs, log_dir, host, deadline)
        else:
            replicas = _start_replicas(env, procs, log_dir, host, deadline)
        url = _start_gateway(env, replicas, procs, log_dir, host, deadline)
        _log().info(
            "environment_ready", environment=env.name, url=url, seconds=time.monotonic() - t0
        )
        yield Started(
            name=env.name,
            url=url,
            replicas=replicas,
            admin_url=url,
            time_scale=env.time_scale,
            pids=[proc.pid for proc in procs],
        )
    finally:
        with _interrupts_deferred():
            for proc in reversed(procs):
                try:
                    proc.stop()
                except Exception as exc:  # keep stopping the others
                    _log().error("process_stop_failed", process=proc.name, error=repr(exc))


@contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """A Ctrl-C must not cut a teardown short and leave processes behind, nor be lost: one
    that comes during it is raised once it is done (a teardown between two runs of a
    compare used to swallow it, and the next run began)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pressed: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: pressed.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pressed:
        raise KeyboardInterrupt("interrupted during a teardown")
