"""Safe defaults, end to end: /admin open beyond loopback stops start-up; keys (clients',
the admin's, a replica's) never appear in logs or in /admin; a replica's key goes to it
and to nobody else; credentials in a replica URL are refused."""

import json
from collections.abc import Callable
from pathlib import Path

import httpx

from gateway.replicas_file import ConfigError, normalize_url
from tests.gateway.conftest import Fake, admin_replicas, replicas_file
from tests.gateway.test_cli import run_gateway
from tests.procs import Proc

CLIENT_KEY = "sk-client-0123456789"
ADMIN_KEY = "sk-admin-0123456789"
REPLICA_KEY = "sk-replica-0123456789"


def test_listening_beyond_loopback_with_open_admin_stops_start_up() -> None:
    result = run_gateway("--replicas", "http://127.0.0.1:9", "--host", "0.0.0.0")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("gateway: error: /admin would be open to the network")
    assert "GATEWAY_ALLOW_OPEN_ADMIN=true" in lines[0]


def test_credentials_in_a_replica_url_are_refused() -> None:
    for url in ("http://user:pw@10.0.0.1:8000", "http://token@10.0.0.1:8000"):
        try:
            normalize_url(url)
        except ConfigError as exc:
            assert "pw" not in str(exc) and "token" not in str(exc)
            assert "api_key" in str(exc)
        else:
            raise AssertionError(f"{url} was accepted")


def test_keys_reach_only_where_they_belong(
    fake: Callable[..., Fake], gateway: Callable[..., Proc], tmp_path: Path
) -> None:
    replica = fake("r0")
    path = replicas_file(tmp_path, [{"url": replica.url, "name": "r0", "api_key": REPLICA_KEY}])
    gw = gateway(replicas_file=path, api_keys=CLIENT_KEY, admin_key=ADMIN_KEY, log_level="debug")
    chat = {"model": "m1", "messages": [{"role": "user", "content": "hi"}]}
    url = gw.url + "/v1/chat/completions"
    ok = httpx.post(url, json=chat, headers={"authorization": f"Bearer {CLIENT_KEY}"}, timeout=10)
    assert ok.status_code == 200
    # The replica got its own key, not the client's.
    assert replica.state()["last_headers"]["authorization"] == f"Bearer {REPLICA_KEY}"
    wrong = httpx.post(url, json=chat, headers={"authorization": "Bearer sk-wrong-key"}, timeout=10)
    assert wrong.status_code == 401
    assert httpx.get(gw.url + "/admin/replicas", timeout=5).status_code == 401
    state = admin_replicas(gw, authorization=f"Bearer {ADMIN_KEY}")
    shown = json.dumps(state)
    assert state["replicas"][0]["url"] == replica.url
    metrics = httpx.get(gw.url + "/metrics", timeout=5).text
    output = gw.output()
    assert "request_finished" in output and "gateway_started" in output
    for secret in (CLIENT_KEY, ADMIN_KEY, REPLICA_KEY, "sk-wrong-key"):
        assert secret not in shown
        assert secret not in metrics
        assert secret not in output, f"{secret} in the gateway's log"
