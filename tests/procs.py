"""Start real processes on 127.0.0.1 for end-to-end tests, and always stop them."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def bin_path(script: str) -> str:
    """The console script installed beside this interpreter (the venv's)."""
    return str(Path(sys.executable).parent / script)


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM the process group we created, SIGKILL it if it lingers."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout)
        return self.popen.returncode


def start(
    argv: Sequence[str],
    *,
    port: int,
    ready_path: str = "/health",
    env: dict[str, str] | None = None,
    timeout: float = 20.0,
) -> Proc:
    """Start argv (which should listen on `port`), wait until GET ready_path answers.

    Any HTTP answer counts as ready. Raises with the process's output if it exits
    or does not answer within `timeout` seconds; the process is stopped then.
    """
    log = Path(tempfile.mkstemp(prefix="proc-", suffix=".log")[1])
    with log.open("wb") as sink:
        popen = subprocess.Popen(
            list(argv),
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    proc = Proc(popen, port, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"{argv[0]} exited with {popen.returncode}:\n{proc.output()}")
        try:
            httpx.get(proc.url + ready_path, timeout=1.0)
            return proc
        except httpx.TransportError:
            time.sleep(0.05)
    proc.stop()
    raise TimeoutError(f"{argv[0]} did not answer on {proc.url} in {timeout}s:\n{proc.output()}")
