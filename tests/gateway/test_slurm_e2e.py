"""A rendered replica.sbatch run for real (bash, curl) with Slurm's commands stubbed: its
"engine" is a fake replica. It registers with a real gateway once healthy, serves the
openai SDK through it, and on SIGTERM (Slurm's warning before the time limit) deregisters,
lets its stream in flight finish, then stops the engine."""

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deploy.slurm_render import load_render
from tests.gateway.conftest import SDK, wait_until
from tests.procs import HOST, Proc, free_port

KEY = "slurm-admin-key"
ROOT = Path(__file__).resolve().parents[2]


def stubs(directory: Path) -> Path:
    """scontrol and srun as the script uses them; srun starts a fake replica on $PORT."""
    directory.mkdir()
    (directory / "scontrol").write_text(f"#!/bin/sh\necho {HOST}\n")
    (directory / "srun").write_text(
        "#!/bin/sh\n"
        f"cd {ROOT}\n"
        f'exec {sys.executable} -m tests.gateway.fake_replica --port "$PORT" '
        "--name slurm --models m1\n"
    )
    for stub in directory.iterdir():
        stub.chmod(0o755)
    return directory


@pytest.fixture
def job(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def _job(script: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (tmp_path / "job.log").open("wb") as log:
            proc = subprocess.Popen(
                ["bash", str(script)],
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append(proc)
        return proc

    yield _job
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def names(gw: Proc) -> dict[str, dict[str, Any]]:
    response = httpx.get(gw.url + "/admin/replicas", headers={"authorization": f"Bearer {KEY}"})
    return {r["name"]: r for r in response.json()["replicas"]}


def test_a_slurm_replica_registers_serves_and_drains_on_sigterm(
    gateway: Callable[..., Proc],
    job: Callable[..., subprocess.Popen[bytes]],
    sdk: SDK,
    chat: dict[str, Any],
    tmp_path: Path,
) -> None:
    gw = gateway(discovery="admin", admin_key=KEY, health_interval=0.5)
    url_file = tmp_path / "gateway-url"
    url_file.write_text(gw.url + "\n")
    port = free_port()
    out = tmp_path / "out"
    argv = ["--model", "m1", "--gpus-per-replica", "1", "--port", str(port), "--out", str(out)]
    argv += ["--gateway-url-file", str(url_file), "--health-timeout", "30", "--drain", "15"]
    assert load_render().main(argv) == 0
    env = {
        "PATH": f"{stubs(tmp_path / 'bin')}:{os.environ['PATH']}",
        "SLURM_JOB_ID": "7001",
        "SLURM_ARRAY_JOB_ID": "7000",
        "SLURM_ARRAY_TASK_ID": "1",
        "SLURM_JOB_NODELIST": "gpu-[1-2]",
        "GATEWAY_ADMIN_KEY": KEY,
    }
    proc = job(out / "replica.sbatch", env)
    log = tmp_path / "job.log"
    wait_until(
        lambda: names(gw).get("slurm-7000-1", {}).get("healthy") is True,
        timeout=30,
        what=f"the job registered; its log: {log}",
    )
    assert names(gw)["slurm-7000-1"]["url"] == f"http://{HOST}:{port}"
    client = sdk(gw, timeout=30.0)
    reply = client.chat.completions.create(**chat)
    assert reply.choices[0].message.content == "from slurm"

    # A stream in flight when the warning comes finishes whole.
    engine = f"http://{HOST}:{port}"
    httpx.post(engine + "/fake/config", json={"chunk_delay": 0.3}, timeout=5).raise_for_status()
    pieces: list[str] = []

    def read() -> None:
        for chunk in client.chat.completions.create(**chat, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
        pieces.append("[end]")

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    wait_until(lambda: httpx.get(engine + "/fake/state").json()["active"] == 1)
    proc.send_signal(signal.SIGTERM)  # the batch shell only, as --signal=B:TERM does
    wait_until(lambda: "slurm-7000-1" not in names(gw), timeout=15, what="deregistered")
    reader.join(timeout=15)
    assert pieces == [f"w{i} " for i in range(5)] + ["[end]"]
    assert proc.wait(timeout=20) == 143
    text = log.read_text()
    assert "registered with" in text and "deregistering slurm-7000-1" in text
    # The engine was stopped with the job.
    wait_until(lambda: _refused(engine), timeout=10, what="the engine stopped")


def _refused(url: str) -> bool:
    try:
        httpx.get(url + "/health", timeout=1)
    except httpx.TransportError:
        return True
    return False
