"""Prefix- and session-aware strategies end to end: simulated vLLM replicas and a gateway as
real processes, the openai SDK as the client, options from GATEWAY_STRATEGY_OPTIONS."""

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.gateway.conftest import SDK, admin_replicas, replicas_file
from tests.loadtest.sim.serving import MODEL, serve_argv
from tests.procs import Proc


def start(
    spawn: Callable[..., Proc], gateway: Callable[..., Proc], tmp_path: Path, **settings: Any
) -> Proc:
    sims = [spawn(serve_argv()) for _ in range(3)]
    path = replicas_file(tmp_path, [{"url": s.url, "name": f"r{i}"} for i, s in enumerate(sims)])
    return gateway(replicas_file=path, **settings)


def system_prompt(topic: int) -> str:
    return f"You answer questions about topic {topic}. " + "Be precise and brief. " * 40


def served_by(client: Any, messages: list[dict[str, str]], **extra: Any) -> str:
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=messages, max_tokens=4, **extra
    )
    raw.parse()
    return str(raw.headers["x-turnout-replica"])


def test_prefix_least_work_keeps_a_system_prompt_on_one_replica(
    spawn: Callable[..., Proc], gateway: Callable[..., Proc], sdk: SDK, tmp_path: Path
) -> None:
    gw = start(
        spawn, gateway, tmp_path,
        strategy="prefix_least_work", strategy_options='{"seed": 3, "cache_weight": 4}',
    )  # fmt: skip
    assert admin_replicas(gw)["strategy"] == "prefix_least_work"
    client = sdk(gw)
    homes: dict[int, set[str]] = {}
    for question in range(6):
        for topic in range(6):
            messages = [
                {"role": "system", "content": system_prompt(topic)},
                {"role": "user", "content": f"Question {question} about {topic}?"},
            ]
            homes.setdefault(topic, set()).add(served_by(client, messages))
    # Each system prompt stays where it was first sent; the six spread over the replicas.
    assert all(len(replicas) == 1 for replicas in homes.values())
    assert len({next(iter(replicas)) for replicas in homes.values()}) >= 2


def test_session_affinity_keeps_a_user_on_one_replica(
    spawn: Callable[..., Proc], gateway: Callable[..., Proc], sdk: SDK, tmp_path: Path
) -> None:
    gw = start(spawn, gateway, tmp_path, strategy="session_affinity", strategy_options="seed=1")
    client = sdk(gw)
    seen: dict[str, Counter[str]] = {}
    for turn in range(4):
        for user in range(8):
            messages = [{"role": "user", "content": f"turn {turn} says something new"}]
            replica = served_by(client, messages, user=f"user-{user}")
            seen.setdefault(f"user-{user}", Counter())[replica] += 1
    assert all(len(replicas) == 1 for replicas in seen.values())
    assert len({next(iter(c)) for c in seen.values()}) >= 2
