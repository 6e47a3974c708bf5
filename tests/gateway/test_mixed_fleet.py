"""A mixed fleet end to end: the gateway in front of `vllm-sim serve --present-as` vLLM,
SGLang, llama-server, llama-cpp-python and Ollama replicas, the OpenAI SDK as the client.

Each model reaches its kind under the kind's own name; kinds without /metrics are routed
by the gateway's own counts; kinds without /health are checked where they answer (without
cutting llama-cpp-python's streams); any kind that goes down is ejected and restored."""

import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gateway.kinds import KINDS
from loadtest.sim.faces import FACES
from loadtest.sim.types import natural_stop_length
from tests.gateway.conftest import SDK, admin_replicas, replicas_file, wait_until
from tests.loadtest.sim.serving import serve_argv
from tests.procs import Proc, bin_path, free_port

HELLO: Any = [{"role": "user", "content": "hello"}]


@dataclass
class Seat:
    """One replica of the fleet: its kind, the name clients use and its own name."""

    name: str
    face: str
    public: str
    own: str
    flags: tuple[str, ...] = ()
    # Written into the replicas file; a kind left out is detected.
    entry: dict[str, Any] = field(default_factory=dict)


FLEET = (
    Seat("vllm-0", "vllm", "meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B-Instruct"),
    # SGLang's /health runs a generation: here it takes a second, twice the gateway's
    # health interval.
    Seat(
        "sglang-0",
        "sglang",
        "qwen/qwen2.5-0.5b-instruct",
        "qwen/qwen2.5-0.5b-instruct",
        ("--health-delay", "1.0"),
        {"kind": "sglang"},
    ),
    Seat("llamacpp-0", "llamacpp", "microsoft/phi-4", "/models/phi-4-Q4_K_M.gguf"),
    Seat(
        "lcp-0",
        "llama-cpp-python",
        "mistralai/Mistral-7B-Instruct-v0.3",
        "/models/mistral-7b-instruct-v0.3.Q4_K_M.gguf",
        (),
        {"kind": "llama-cpp-python"},
    ),
    Seat("ollama-0", "ollama", "Qwen/Qwen3-32B", "qwen3:32b-q8_0", (), {"kind": "ollama"}),
)


def start_sims(
    spawn: Callable[..., Proc], seats: Sequence[Seat], *flags: str, ports: Sequence[int] = ()
) -> list[Proc]:
    """Start one simulator per seat, all at once (each takes a second to import)."""
    chosen = list(ports) or [free_port() for _ in seats]

    def one(args: tuple[Seat, int]) -> Proc:
        seat, port = args
        argv = serve_argv("--present-as", seat.face, *seat.flags, *flags, model=seat.own)
        # /v1/models answers at once on every kind (SGLang's /health takes its time).
        return spawn(argv, port=port, ready_path="/v1/models")

    with ThreadPoolExecutor(len(seats)) as pool:
        return list(pool.map(one, zip(seats, chosen, strict=True)))


def fleet_file(tmp_path: Path, seats: Sequence[Seat], sims: Sequence[Proc]) -> Path:
    entries = []
    for seat, sim in zip(seats, sims, strict=True):
        entry = {"url": sim.url, "name": seat.name, **seat.entry}
        if seat.public != seat.own:
            entry["aliases"] = {seat.public: seat.own}
        entries.append(entry)
    return replicas_file(tmp_path, entries)


def ask(client: openai.OpenAI, model: str, **extra: Any) -> tuple[str, str]:
    """(replica that served it, the model name the replica answered with)."""
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=HELLO, max_tokens=4, **extra
    )
    reply = raw.parse()
    assert reply.choices[0].message.content
    return raw.headers["x-turnout-replica"], reply.model


def by_name(gw: Proc) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in admin_replicas(gw)["replicas"]}


def test_each_model_reaches_its_kind_under_its_own_name(
    spawn: Callable[..., Proc], gateway: Callable[..., Proc], tmp_path: Path, sdk: SDK
) -> None:
    sims = start_sims(spawn, FLEET)
    gw = gateway(replicas_file=fleet_file(tmp_path, FLEET, sims), health_interval=0.5)
    client = sdk(gw)
    for seat in FLEET:
        # The replica answers with its own name: the gateway sent it that one.
        assert ask(client, seat.public) == (seat.name, seat.own)
    assert {m.id for m in client.models.list().data} == {seat.public for seat in FLEET}

    state = by_name(gw)
    assert {name: r["kind"] for name, r in state.items()} == {s.name: s.face for s in FLEET}
    assert all(r["kind_verified"] for r in state.values())
    assert state["ollama-0"]["aliases"] == {"Qwen/Qwen3-32B": "qwen3:32b-q8_0"}

    # Ollama's stream through the gateway, as the SDK reads it.
    chunks = list(
        client.chat.completions.create(
            model="Qwen/Qwen3-32B", messages=HELLO, max_tokens=4, stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    # A name the replicas know only under an alias is not served under that name.
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="qwen3:32b-q8_0", messages=HELLO, max_tokens=4)

    # Health rounds go by: SGLang's slow /health (1 s, four times the half-interval
    # timeout a vLLM replica gets) keeps it in.
    time.sleep(2.5)
    assert all(r["healthy"] for r in by_name(gw).values())
    assert "replica_ejected" not in gw.output()


def test_kinds_without_metrics_are_routed_by_local_counts(
    spawn: Callable[..., Proc], gateway: Callable[..., Proc], tmp_path: Path, sdk: SDK
) -> None:
    # llama-server without --metrics (501) and Ollama (none) serve one model between them.
    seats = [
        Seat("llamacpp-0", "llamacpp", "m", "/models/m.gguf"),
        Seat("ollama-0", "ollama", "m", "m:latest"),
    ]
    sims = start_sims(spawn, seats, "--time-scale", "30")
    gw = gateway(
        replicas_file=fleet_file(tmp_path, seats, sims),
        strategy="queue_depth",
        poll_interval=0.2,
    )
    client = sdk(gw)
    # A long answer holds one replica busy (Ollama ignores ignore_eos: a seed with a
    # long natural answer, so either replica takes a while).
    seed = next(s for s in range(1000) if natural_stop_length(s) > 150)
    stream = client.chat.completions.with_raw_response.create(
        model="m", messages=HELLO, max_tokens=300, stream=True, seed=seed
    )
    busy = stream.headers["x-turnout-replica"]
    events = stream.parse()
    next(iter(events))
    idle = ({"llamacpp-0", "ollama-0"} - {busy}).pop()
    assert [ask(client, "m")[0] for _ in range(4)] == [idle] * 4
    events.close()
    for replica in by_name(gw).values():
        assert replica["waiting"] is None and replica["metrics_stale"]


def test_llama_cpp_python_is_checked_without_cutting_its_stream(
    spawn: Callable[..., Proc], gateway: Callable[..., Proc], tmp_path: Path, sdk: SDK
) -> None:
    # Its /v1/models takes the generation lock and a waiting request ends the stream in
    # progress: the gateway probes /openapi.json instead, and sends it one request at a time.
    seat = FLEET[3]
    (sim,) = start_sims(spawn, [seat], "--time-scale", "30")
    gw = gateway(replicas_file=fleet_file(tmp_path, [seat], [sim]), health_interval=0.1)
    client = sdk(gw)
    stream = client.chat.completions.create(
        model=seat.public,
        messages=HELLO,
        max_tokens=60,
        stream=True,
        extra_body={"ignore_eos": True},
    )
    events = iter(stream)
    next(events)
    # Busy: the next request is refused by the gateway rather than cut the stream short.
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=seat.public, messages=HELLO, max_tokens=4)
    assert caught.value.status_code == 503
    reasons = [c.choices[0].finish_reason for c in events if c.choices]
    # Over a second of streaming, with a health check every 0.1 s: it ran to its end.
    assert reasons[-1] == "length"
    assert by_name(gw)["lcp-0"]["healthy"]


def test_any_kind_that_goes_down_is_ejected_and_restored(
    spawn: Callable[..., Proc], gateway: Callable[..., Proc], tmp_path: Path, sdk: SDK
) -> None:
    sims = start_sims(spawn, FLEET, "--health-delay", "0")
    gw = gateway(replicas_file=fleet_file(tmp_path, FLEET, sims), health_interval=0.2)
    ports = [sim.port for sim in sims]
    for sim in sims:
        sim.stop()
    wait_until(lambda: not any(r["healthy"] for r in by_name(gw).values()), 10, "all ejected")
    start_sims(spawn, FLEET, "--health-delay", "0", ports=ports)
    wait_until(lambda: all(r["healthy"] for r in by_name(gw).values()), 20, "all restored")
    client = sdk(gw)
    for seat in FLEET:
        assert ask(client, seat.public) == (seat.name, seat.own)


def test_a_model_fails_over_between_kinds(
    spawn: Callable[..., Proc], gateway: Callable[..., Proc], tmp_path: Path, sdk: SDK
) -> None:
    seats = [Seat("vllm-0", "vllm", "m", "m"), Seat("ollama-0", "ollama", "m", "m:latest")]
    sims = start_sims(spawn, seats)
    gw = gateway(replicas_file=fleet_file(tmp_path, seats, sims), strategy="round_robin")
    client = sdk(gw)
    assert sorted(ask(client, "m") for _ in range(2)) == [("ollama-0", "m:latest"), ("vllm-0", "m")]
    sims[0].stop()
    assert [ask(client, "m") for _ in range(3)] == [("ollama-0", "m:latest")] * 3
    assert not by_name(gw)["vllm-0"]["healthy"]


def test_an_openai_replica_gets_its_own_key_which_is_never_shown(
    fake: Callable[..., Any], gateway: Callable[..., Proc], tmp_path: Path, sdk: SDK
) -> None:
    secret = "sk-test-0123456789abcdef"
    upstream = fake("cloud", models=["gpt-4o-mini"])
    path = replicas_file(
        tmp_path,
        [{"url": upstream.url, "name": "cloud", "kind": "openai", "api_key_env": "CLOUD_KEY"}],
    )
    gw = gateway(replicas_file=path, log_level="info", env={"CLOUD_KEY": secret})
    reply = sdk(gw, key="client-key").chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, max_tokens=4
    )
    assert reply.choices[0].message.content == "from cloud"
    assert upstream.state()["last_headers"]["authorization"] == f"Bearer {secret}"
    assert secret not in httpx.get(gw.url + "/admin/replicas", timeout=5).text
    assert secret not in gw.output()
    assert by_name(gw)["cloud"]["kind"] == "openai"


def gateway_start_error(replicas: list[dict[str, Any]], tmp_path: Path) -> str:
    """The one line `gateway` stops with (exit code 2) on this replicas file."""
    path = replicas_file(tmp_path, replicas)
    result = subprocess.run(
        [bin_path("gateway"), "--replicas-file", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    return line


def test_a_kind_the_server_contradicts_stops_start_up(
    spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    (sim,) = start_sims(spawn, [Seat("s0", "sglang", "m", "m")])
    line = gateway_start_error([{"url": sim.url, "name": "s0", "kind": "vllm"}], tmp_path)
    assert f"replica s0 ({sim.url})" in line
    assert "kind is 'vllm' but the server answers like 'sglang'" in line


@pytest.mark.parametrize(
    ("configured", "words"),
    [
        ({"kind": "mlx"}, ["replica 0 (s0)", "unknown kind 'mlx'", "llama-cpp-python"]),
        ({"aliases": {"a": "x", "b": "x"}}, ["replica 0 (s0)", "'a' and 'b' both map to 'x'"]),
    ],
    ids=["unknown-kind", "alias-clash"],
)
def test_an_unknown_kind_or_a_clashing_alias_stops_start_up(
    tmp_path: Path, configured: dict[str, Any], words: list[str]
) -> None:
    # Found in the file alone: no replica needs to answer.
    entry = {"url": "http://127.0.0.1:9", "name": "s0", **configured}
    line = gateway_start_error([entry], tmp_path)
    for word in words:
        assert word in line


def test_every_simulated_server_is_a_kind() -> None:
    assert set(KINDS) - set(FACES) == {"openai"}
