"""Client keys end to end: names in the log line and the metrics, 429 with Retry-After in
OpenAI's shape past a key's rate or concurrency, and a keys file re-read when it changes."""

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.gateway.conftest import Fake, wait_until
from tests.procs import Proc

CHAT = {"model": "m1", "messages": [{"role": "user", "content": "hi"}]}


def post(gw: Proc, key: str) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"}
    return httpx.post(gw.url + "/v1/chat/completions", json=CHAT, headers=headers, timeout=10)


def test_named_keys_with_limits_and_a_reloaded_file(
    fake: Callable[..., Fake], gateway: Callable[..., Proc], tmp_path: Path
) -> None:
    replica = fake("r0")
    keys = tmp_path / "keys.yaml"
    keys.write_text(
        "keys:\n"
        "  - {key: sk-team-a, name: team-a, rate: 0.2, burst: 2}\n"
        "  - {key: sk-team-b, name: team-b, concurrency: 1}\n"
    )
    gw = gateway(replicas=[replica.url], api_keys_file=keys, log_level="info")
    # team-a: a burst of two, then 429 until the next token (5 s at 0.2 per second).
    assert [post(gw, "sk-team-a").status_code for _ in range(2)] == [200, 200]
    limited = post(gw, "sk-team-a")
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 5
    error = limited.json()["error"]
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
    assert "team-a" in error["message"]
    # team-b: one request open at a time; a second one meanwhile is refused.
    replica.configure(headers_delay=1.0)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(post, gw, "sk-team-b")
        time.sleep(0.3)
        second = pool.submit(post, gw, "sk-team-b")
        statuses = sorted([first.result().status_code, second.result().status_code])
    assert statuses == [200, 429]
    replica.configure(headers_delay=0.0)
    metrics = httpx.get(gw.url + "/metrics", timeout=5).text
    assert 'turnout_rate_limited_total{key="team-a",limit="rate"} 1.0' in metrics
    assert 'turnout_rate_limited_total{key="team-b",limit="concurrency"} 1.0' in metrics
    assert 'turnout_key_requests_total{key="team-a",status="200"} 2.0' in metrics
    lines = [json.loads(line) for line in gw.output().splitlines() if line.startswith("{")]
    finished = [line for line in lines if line.get("event") == "request_finished"]
    assert {line["key"] for line in finished} == {"team-a", "team-b"}

    # The file changes (replaced, as editors and config tools do): team-c in, team-a out.
    staged = tmp_path / "keys.new"
    staged.write_text("keys:\n  - {key: sk-team-c, name: team-c}\n")
    staged.replace(keys)
    wait_until(lambda: post(gw, "sk-team-c").status_code == 200, 10, "team-c accepted")
    assert post(gw, "sk-team-a").status_code == 401
    # A broken edit keeps the keys in force, and says why in the log.
    keys.write_text("keys: [{name: no-key-here}]\n")
    wait_until(lambda: "api_keys_file_invalid" in gw.output(), 10, "the bad file is reported")
    assert post(gw, "sk-team-c").status_code == 200
    assert "sk-team" not in gw.output()
