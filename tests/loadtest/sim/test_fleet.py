"""`vllm-sim fleet`: six reference replicas that come up, answer, and all go away."""

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from loadtest.sim.fleet import fleet_replicas, partition
from loadtest.sim.layout import DEPLOYMENTS, FLEETS, REFERENCE, placements, seats
from tests.procs import HOST, Proc, bin_path, free_port


def free_base_port(count: int = 6) -> int:
    """A port p such that p..p+count-1 are all free right now."""
    for _ in range(50):
        base = free_port()
        socks = []
        try:
            for offset in range(count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind((HOST, base + offset))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free ports")


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def start_fleet(spawn: Callable[..., Proc], name: str, *extra: str) -> tuple[Proc, list[str]]:
    base = free_base_port(len(seats(name)))
    argv = [bin_path("vllm-sim"), "fleet", name, "--base-port", "{port}", *extra]
    proc = spawn(argv, port=base, timeout=30)
    assert wait_for(lambda: "fleet ready" in proc.output(), 30), proc.output()
    lines = [line for line in proc.output().splitlines() if line.startswith("replica ")]
    return proc, lines


def test_partition_keeps_pools_together_and_spreads_the_rest() -> None:
    managed = fleet_replicas("managed", 9000, 1.0)
    groups = partition(managed, 2)
    assert sorted(len(g) for g in groups) == [3, 3]
    assert partition(managed, 6) == [[r] for r in managed]
    assert len(partition(managed, 1)) == 1
    # Two replicas on one simulated GPU share its pool, so they share a process.
    shared = [replace(r, config=replace(r.config, kv_pool="gpu0")) for r in managed[:2]]
    together = partition([*shared, *managed[2:]], 6)
    assert [r.index for r in together[0]] == [0, 1] and len(together) == 5


def test_baseline_fleet_serves_and_stops_on_sigterm(spawn: Callable[..., Proc]) -> None:
    proc, lines = start_fleet(spawn, "baseline", "--time-scale", "2")
    assert len(lines) == 6
    workers = children(proc.popen.pid)
    assert workers
    for index, (line, seat) in enumerate(zip(lines, REFERENCE, strict=True)):
        _, number, served, url = line.split()
        assert int(number) == index and served == seat.model
        assert url == f"http://{HOST}:{proc.port + index}"
        assert httpx.get(url + "/v1/models").json()["data"][0]["id"] == seat.model
        version = httpx.get(url + "/version").json()
        assert version["profile"] == seat.profile and version["time_scale"] == 2.0
        assert version["kv_mode"] == "static" and version["prefix_caching"] is True
    reply = httpx.post(
        lines[4].split()[3] + "/v1/chat/completions",
        json={
            "model": REFERENCE[4].model,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 3,
        },
        timeout=10,
    )
    assert reply.status_code == 200
    os.kill(proc.popen.pid, signal.SIGTERM)  # the parent alone: it must stop its workers
    assert proc.popen.wait(10) == 0
    assert wait_for(lambda: not any(alive(pid) for pid in workers), 5)


def test_managed_fleet_is_elastic_and_stops_on_sigint(spawn: Callable[..., Proc]) -> None:
    proc, lines = start_fleet(spawn, "managed")
    workers = children(proc.popen.pid)
    for line in lines:
        version = httpx.get(line.split()[3] + "/version").json()
        assert version["kv_mode"] == "elastic" and version["prefix_caching"] is False
        assert version["kv_pool"]
    os.kill(proc.popen.pid, signal.SIGINT)
    assert proc.popen.wait(10) == 0
    assert wait_for(lambda: not any(alive(pid) for pid in workers), 5)


def test_colocated_fleet_serves_two_models_per_gpu_sharing_pools(
    spawn: Callable[..., Proc],
) -> None:
    proc, lines = start_fleet(spawn, "colocated-elastic")
    assert len(lines) == 8
    for line, place in zip(lines, placements("colocated-elastic"), strict=True):
        _, _, served, url = line.split()
        assert served == place.seat.model
        version = httpx.get(url + "/version").json()
        assert version["kv_mode"] == "elastic" and version["prefix_caching"] is False
        assert version["kv_pool"] == version["gpu"] == place.seat.gpus
    qwen = next(line.split()[3] for line in lines if "Qwen" in line)
    reply = httpx.post(
        qwen + "/v1/chat/completions",
        json={
            "model": "Qwen/Qwen2.5-7B-Instruct",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 3,
        },
        timeout=10,
    )
    assert reply.status_code == 200
    os.kill(proc.popen.pid, signal.SIGTERM)
    assert proc.popen.wait(10) == 0


def test_workers_exit_when_the_parent_is_killed(spawn: Callable[..., Proc]) -> None:
    proc, _ = start_fleet(spawn, "baseline", "--processes", "3")
    workers = children(proc.popen.pid)
    assert len(workers) == 3
    os.kill(proc.popen.pid, signal.SIGKILL)
    proc.popen.wait(5)
    assert wait_for(lambda: not any(alive(pid) for pid in workers), 10)


def test_unknown_fleet_is_refused() -> None:
    result = subprocess.run(
        [bin_path("vllm-sim"), "fleet", "bogus"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2 and ", ".join(FLEETS) in result.stderr


@pytest.mark.parametrize("name", [f for f in FLEETS if DEPLOYMENTS[f].layout == "reference"])
def test_reference_layout(name: str) -> None:
    replicas = fleet_replicas(name, 8001, 1.0)
    assert [r.port for r in replicas] == list(range(8001, 8007))
    assert [r.config.model for r in replicas] == [seat.model for seat in REFERENCE]
    deployed = DEPLOYMENTS[name]
    for replica in replicas:
        config = replica.config
        assert (config.kv_mode, config.prefix_caching) == (
            deployed.kv_mode,
            deployed.prefix_caching,
        )
        assert config.max_cached_tokens == deployed.max_cached_tokens
    pools = [r.config.kv_pool for r in replicas]
    assert len(set(pools)) == 6 if deployed.elastic else pools == [None] * 6


def test_a_busy_port_fails_the_fleet_with_a_clear_message() -> None:
    base = free_base_port()
    with socket.socket() as busy:
        busy.bind((HOST, base + 3))
        busy.listen()
        result = subprocess.run(
            [bin_path("vllm-sim"), "fleet", "baseline", "--base-port", str(base)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"cannot listen on {HOST}:{base + 3}" in result.stderr
    assert "fleet ready" not in result.stdout

    def all_free() -> bool:  # the other worker was stopped too
        try:
            for offset in (0, 1, 2, 4, 5):
                with socket.socket() as sock:
                    sock.bind((HOST, base + offset))
        except OSError:
            return False
        return True

    assert wait_for(all_free, 5)


def test_a_fleet_on_other_hardware_serves_the_moved_profiles(spawn: Callable[..., Proc]) -> None:
    proc, lines = start_fleet(spawn, "managed", "--gpu", "b200", "--precision", "fp4")
    moved = {
        "llama-3.1-8b-h100": "llama-3.1-8b-fp4-b200",
        "qwen2.5-7b-h100": "qwen2.5-7b-fp4-b200",
        "mixtral-8x7b-h100-tp2": "mixtral-8x7b-fp4-b200-tp2",
    }
    for line, seat in zip(lines, REFERENCE, strict=True):
        version = httpx.get(line.split()[3] + "/version").json()
        assert version["profile"] == moved[seat.profile] and version["kv_mode"] == "elastic"
    os.kill(proc.popen.pid, signal.SIGTERM)
    assert proc.popen.wait(10) == 0


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--precision", "fp4"], "has no FP4 tensor cores"),
        (["--profile", "llama-3.1-8b-h100"], "--profile takes OLD=NEW"),
        (["--profile", "gpt-5=llama-3.1-8b-fp4-b200"], "'gpt-5' is not a profile of the layout"),
    ],
)
def test_hardware_the_layout_cannot_run_on_is_refused(args: list[str], complaint: str) -> None:
    result = subprocess.run(
        [bin_path("vllm-sim"), "fleet", "baseline", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and complaint in result.stderr
