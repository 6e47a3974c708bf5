"""GATEWAY_WORKERS=2 end to end: two worker processes on one port in front of simulated
replicas, the openai SDK as the client over fresh connections. Both workers serve; /metrics
counts every request once and in-flight across workers whichever worker is scraped; admin
changes are refused; SIGTERM (or SIGKILL) to the parent leaves no process behind; a killed
worker is reported and replaced; what several workers cannot do stops start-up."""

import os
import re
import shutil
import signal
import time
from collections.abc import Callable
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway.conftest import Fake, replicas_file, wait_until
from tests.gateway.test_cli import run_gateway
from tests.loadtest.sim.serving import MODEL, serve_argv
from tests.procs import Proc

MESSAGES: Any = [{"role": "user", "content": "Tell me about turnouts."}]


def fresh_client(gw: Proc) -> openai.OpenAI:
    """An SDK client on a connection of its own (the kernel picks the worker per connection)."""
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0, timeout=10)


def scrape(gw: Proc) -> tuple[int, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    """(the worker that answered, every sample) of one /metrics on a fresh connection."""
    response = httpx.get(gw.url + "/metrics", timeout=5, headers={"connection": "close"})
    response.raise_for_status()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    return int(response.headers["x-turnout-worker"]), samples


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    return sum(value for (sample, _), value in samples.items() if sample == name)


def scrape_every_worker(gw: Proc, workers: int = 2, timeout: float = 20.0) -> list[Any]:
    """At least 4 scrapes, until each of `workers` workers has answered one (bounded)."""
    seen: set[int] = set()
    scrapes = []
    deadline = time.monotonic() + timeout
    for _ in range(400):
        worker, samples = scrape(gw)
        seen.add(worker)
        scrapes.append((worker, samples))
        if len(seen) == workers and len(scrapes) >= 4:
            return scrapes
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    raise AssertionError(f"only workers {seen} answered {len(scrapes)} scrapes")


def request_workers(gw: Proc) -> list[int]:
    """The worker of every request line in the gateway's log."""
    lines = [orjson.loads(line) for line in gw.output().splitlines() if "request_finished" in line]
    return [line["worker"] for line in lines]


def logged(gw: Proc, requests: int) -> bool:
    return len(request_workers(gw)) == requests


def group(pgid: int) -> list[int]:
    """The pids of the live processes in process group `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


@pytest.fixture
def two_workers(
    spawn: Callable[..., Proc], gateway: Callable[..., Proc], tmp_path: Path
) -> Callable[..., Proc]:
    def _start(replicas: list[Proc], **settings: Any) -> Proc:
        entries = [{"url": r.url, "name": f"r{i}"} for i, r in enumerate(replicas)]
        gw = gateway(
            replicas_file=replicas_file(tmp_path, entries),
            workers=2,
            log_level="info",
            **settings,
        )
        scrape_every_worker(gw)  # both up (the fixture waited for the first only)
        return gw

    return _start


def test_two_workers_serve_and_metrics_count_every_request_once(
    spawn: Callable[..., Proc], two_workers: Callable[..., Proc]
) -> None:
    sims = [spawn(serve_argv("--seed", str(i))) for i in range(2)]
    gw = two_workers(sims, strategy="round_robin", poll_interval=0.2)
    sent = 0
    for _ in range(40):  # until both workers have served, and at least 12 requests
        with fresh_client(gw) as client:
            reply = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4)
        assert reply.choices[0].message.content
        sent += 1
        wait_until(partial(logged, gw, sent), what="the request's log line")
        if sent >= 12 and len(set(request_workers(gw))) == 2:
            break
    served = request_workers(gw)
    assert len(set(served)) == 2, f"one worker served all {sent} requests"

    # A worker publishes its in-flight count to the others every 0.1 s: let it settle.
    wait_until(
        lambda: all(total(s, "turnout_in_flight") == 0 for _, s in scrape_every_worker(gw)),
        what="no request in flight on either worker",
    )
    # Every scrape, on either worker, counts every request exactly once.
    for worker, samples in scrape_every_worker(gw):
        assert total(samples, "turnout_requests_total") == sent, worker
        assert total(samples, "turnout_request_duration_seconds_count") == sent, worker
        healthy = [v for (n, _), v in samples.items() if n == "turnout_replica_healthy"]
        assert healthy == [1.0, 1.0]

    # Each worker's view is its own; changing it through one worker is refused.
    for path, body in (("/strategy", {"strategy": "queue_depth"}), ("/replicas/r0/drain", None)):
        method = "PUT" if body else "POST"
        refused = httpx.request(method, gw.url + "/admin" + path, json=body, timeout=5)
        assert refused.status_code == 409, refused.text
        assert "2 workers" in refused.json()["error"]["message"]
    assert httpx.get(gw.url + "/admin/replicas", timeout=5).json()["worker"] in served


def test_in_flight_on_metrics_is_every_workers_open_streams(
    fake: Callable[..., Fake], two_workers: Callable[..., Proc]
) -> None:
    replicas = [fake("a"), fake("b")]
    for replica in replicas:
        replica.configure(stall_after=1)  # one chunk, then silence: the stream stays open
    gw = two_workers([r.proc for r in replicas], strategy="round_robin")
    with ExitStack() as open_streams:
        held = 0
        for _ in range(24):  # until both workers hold streams, and at least 6
            client = open_streams.enter_context(fresh_client(gw))
            stream = open_streams.enter_context(
                client.chat.completions.create(model="m1", messages=MESSAGES, stream=True)
            )
            assert next(iter(stream)).choices[0].delta.content == "w0 "
            held += 1
            views = per_worker_in_flight(gw)
            if held >= 6 and len(views) == 2 and all(views.values()):
                break
        views = per_worker_in_flight(gw)
        assert len(views) == 2 and all(views.values()), f"one worker holds every stream: {views}"
        assert sum(views.values()) == held
        assert sum(r.state()["active"] for r in replicas) == held

        def metrics_agree() -> bool:
            return all(
                total(samples, "turnout_in_flight") == held
                for _, samples in scrape_every_worker(gw)
            )

        wait_until(metrics_agree, what=f"/metrics shows {held} in flight on either worker")
    # Streams closed: the replicas' requests end, and so does the count.
    wait_until(lambda: sum(r.state()["active"] for r in replicas) == 0, what="streams closed")
    wait_until(
        lambda: all(total(s, "turnout_in_flight") == 0 for _, s in scrape_every_worker(gw)),
        what="in-flight back to 0",
    )


def per_worker_in_flight(gw: Proc, tries: int = 100) -> dict[int, int]:
    """Each worker's own in-flight total, from /admin/replicas on fresh connections."""
    views: dict[int, int] = {}
    for _ in range(tries):
        body = httpx.get(
            gw.url + "/admin/replicas", timeout=5, headers={"connection": "close"}
        ).json()
        views[body["worker"]] = sum(r["in_flight"] for r in body["replicas"])
        if len(views) == 2:
            break
    return views


def test_sigterm_to_the_parent_stops_every_worker(
    fake: Callable[..., Fake], two_workers: Callable[..., Proc], tmp_path: Path
) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text("keys:\n  - key: k1\n    name: team\n")
    gw = two_workers([fake("a").proc], api_keys_file=keys)
    # Keys without limits work; limits added at run time are refused by every worker,
    # which keep the keys in force.
    keys.write_text("keys:\n  - key: k1\n  - key: k2\n    concurrency: 1\n")
    wait_until(
        lambda: gw.output().count("api_keys_file_invalid") == 2,
        what="both workers refused the keys file with limits",
    )
    assert "per-key limits (rate, concurrency) need GATEWAY_WORKERS=1" in gw.output()
    with fresh_client(gw) as client, client.with_options(api_key="k1") as keyed:
        assert keyed.chat.completions.create(model="m1", messages=MESSAGES).choices
    for _ in range(4):  # the new file was not applied, on any worker: k2 is unknown
        with (
            fresh_client(gw) as client,
            client.with_options(api_key="k2") as keyed,
            pytest.raises(openai.AuthenticationError),
        ):
            keyed.chat.completions.create(model="m1", messages=MESSAGES)
    pgid = gw.popen.pid
    workers = {worker for worker, _ in scrape_every_worker(gw)}
    assert workers <= set(group(pgid)) and pgid not in workers
    shared_dir = Path(metrics_dir(min(workers)))
    assert shared_dir.is_dir() and any(shared_dir.glob("pool_*.json"))
    os.kill(gw.popen.pid, signal.SIGTERM)  # the parent only, not its group
    assert gw.popen.wait(timeout=30) == 0
    wait_until(lambda: not group(pgid), what="no process of the gateway's group left")
    assert '"workers_stopped"' in gw.output()
    assert not shared_dir.exists()


def metrics_dir(worker: int) -> str:
    """The private metrics directory a worker was given (its PROMETHEUS_MULTIPROC_DIR)."""
    environ = Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
    value = next(v for v in environ if v.startswith(b"PROMETHEUS_MULTIPROC_DIR="))
    return value.split(b"=", 1)[1].decode()


def test_a_dead_worker_is_replaced_and_a_killed_parent_takes_the_workers_along(
    fake: Callable[..., Fake], two_workers: Callable[..., Proc]
) -> None:
    gw = two_workers([fake("a").proc])
    for _ in range(4):
        with fresh_client(gw) as client:
            client.chat.completions.create(model="m1", messages=MESSAGES)
    victim = scrape(gw)[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: f'"pid":{victim},"exitcode":-9' in gw.output(), what="worker_died")
    died = next(line for line in gw.output().splitlines() if "worker_died" in line)
    replacement = orjson.loads(died)["restarted_as"]
    assert replacement in group(gw.popen.pid)
    # The replacement serves, and requests counted by the dead worker still count.
    workers = {worker for worker, _ in scrape_every_worker(gw)}
    assert victim not in workers and replacement in workers
    for _, samples in scrape_every_worker(gw):
        assert total(samples, "turnout_requests_total") == 4

    # The parent killed -9 cannot stop them: they stop themselves (PR_SET_PDEATHSIG).
    shared_dir = metrics_dir(replacement)
    os.kill(gw.popen.pid, signal.SIGKILL)
    gw.popen.wait(timeout=10)
    wait_until(lambda: not set(group(gw.popen.pid)) & workers, what="workers gone with the parent")
    shutil.rmtree(shared_dir)  # what a parent killed -9 leaves behind


@pytest.mark.parametrize(
    ("env", "keys", "words"),
    [
        ({"GATEWAY_DISCOVERY": "admin"}, None, ["GATEWAY_DISCOVERY=admin", "POST /admin/replicas"]),
        ({"GATEWAY_KEY_RATE": "5"}, None, ["GATEWAY_KEY_RATE", "2 times the limit"]),
        ({"GATEWAY_KEY_CONCURRENCY": "2"}, None, ["GATEWAY_KEY_CONCURRENCY"]),
        (
            {},
            "keys:\n  - key: k1\n  - key: k2\n    name: k2\n    concurrency: 2\n",
            ["per-key limits", "keys with limits: k2"],
        ),
    ],
)
def test_what_several_workers_cannot_keep_stops_start_up(
    env: dict[str, str], keys: str | None, words: list[str], tmp_path: Path
) -> None:
    env = {"GATEWAY_REPLICAS": "http://127.0.0.1:9", "GATEWAY_WORKERS": "2", **env}
    if keys is not None:
        (tmp_path / "keys.yaml").write_text(keys)
        env["GATEWAY_API_KEYS_FILE"] = str(tmp_path / "keys.yaml")
    result = run_gateway(env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gateway: error: ") and "GATEWAY_WORKERS=1" in lines[0]
    for word in words:
        assert word in lines[0]


def test_workers_must_be_at_least_one() -> None:
    result = run_gateway("--workers", "0", "--replicas", "http://127.0.0.1:9")
    assert result.returncode == 2
    assert re.fullmatch(
        r"gateway: error: --workers / GATEWAY_WORKERS: .*greater than or equal to 1\n",
        result.stderr,
    )
