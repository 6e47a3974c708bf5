"""GATEWAY_DISCOVERY=k8s end to end: a gateway (real process) watching the EndpointSlices of
a Service on a fake Kubernetes API server (tests/gateway/fake_k8s.py, real EndpointSlice
JSON and watch events), fake replicas behind them, the openai SDK as the client."""

import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.gateway.conftest import SDK, Fake, wait_until
from tests.procs import HOST, Proc

NAMESPACE = "serving"
SERVICE = "vllm"


class Cluster:
    def __init__(self, proc: Proc) -> None:
        self.proc = proc

    def put(self, name: str, replica: Fake, *, service: str = SERVICE, **conditions: bool) -> None:
        endpoint = {
            "addresses": [HOST],
            "conditions": {"ready": True, "serving": True, "terminating": False, **conditions},
            "targetRef": {"kind": "Pod", "namespace": NAMESPACE, "name": f"pod-{replica.name}"},
            "nodeName": "node-1",
        }
        body = {
            "service": service,
            "endpoints": [endpoint],
            "ports": [{"name": "http", "port": replica.proc.port, "protocol": "TCP"}],
        }
        url = f"{self.proc.url}/fake/slices/{NAMESPACE}/{name}"
        httpx.put(url, json=body, timeout=5).raise_for_status()

    def delete(self, name: str) -> None:
        url = f"{self.proc.url}/fake/slices/{NAMESPACE}/{name}"
        httpx.delete(url, timeout=5).raise_for_status()

    def close_watches(self, compact: bool = False) -> None:
        url = f"{self.proc.url}/fake/close"
        httpx.post(url, json={"compact": compact}, timeout=5).raise_for_status()

    def state(self) -> dict[str, int]:
        body: dict[str, int] = httpx.get(self.proc.url + "/fake/state", timeout=5).json()
        return body


@pytest.fixture
def cluster(spawn: Callable[..., Proc]) -> Cluster:
    return Cluster(spawn([sys.executable, "-m", "tests.gateway.fake_k8s", "--port", "{port}"]))


def kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": "fake", "user": {"token": "unused"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        "current-context": "fake",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def replicas(gw: Proc) -> dict[str, dict[str, Any]]:
    response = httpx.get(gw.url + "/admin/replicas", timeout=5)
    response.raise_for_status()
    return {r["name"]: r for r in response.json()["replicas"]}


def active(gw: Proc) -> set[str]:
    return {name for name, r in replicas(gw).items() if r["state"] == "active"}


def served_by(sdk: SDK, gw: Proc, chat: dict[str, Any], n: int) -> Counter[str]:
    client = sdk(gw)
    return Counter(
        client.chat.completions.create(**chat).choices[0].message.content or "" for _ in range(n)
    )


def test_replicas_follow_the_services_endpoint_slices(
    cluster: Cluster,
    gateway: Callable[..., Proc],
    fake: Callable[..., Fake],
    sdk: SDK,
    chat: dict[str, Any],
    tmp_path: Path,
) -> None:
    a, b, static = fake("a"), fake("b"), fake("static")
    other = fake("other")
    cluster.put("vllm-a", a)
    gw = gateway(
        replicas=[static.url],
        discovery="k8s",
        k8s_service=SERVICE,
        k8s_namespace=NAMESPACE,
        health_interval=0.5,
        env={"KUBECONFIG": str(kubeconfig(tmp_path, cluster.proc.url))},
    )
    # The slice listed at start-up is a replica; the configured one stays beside it.
    wait_until(lambda: active(gw) == {"pod-a", f"{HOST}:{static.proc.port}"}, what="pod-a")
    assert replicas(gw)["pod-a"]["source"] == "k8s"
    assert replicas(gw)["pod-a"]["url"] == a.url

    # One watch event adds a replica (no new list needed); another Service's slice does not.
    wait_until(lambda: cluster.state()["open_watches"] == 1, what="the gateway watches")
    lists = cluster.state()["lists"]
    cluster.put("other-x", other, service="other")
    cluster.put("vllm-b", b)
    wait_until(lambda: "pod-b" in active(gw), what="pod-b added by one watch event")
    assert "pod-other" not in replicas(gw)
    assert cluster.state()["lists"] == lists
    assert set(served_by(sdk, gw, chat, 6)) == {"from a", "from b", "from static"}

    # A pod turning not-ready (terminating) is drained: its stream in flight finishes whole,
    # new requests go elsewhere, and it leaves once the stream has ended.
    a.configure(chunk_delay=0.3, chunks=5)
    pieces: list[str] = []
    client = sdk(gw, timeout=30.0)

    def read() -> None:
        for chunk in client.chat.completions.create(**chat, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
        pieces.append("[end]")

    # round_robin: send until one stream lands on a (at most three tries).
    for _ in range(3):
        thread = threading.Thread(target=read, daemon=True)
        pieces.clear()
        thread.start()
        wait_until(
            lambda t=thread: not t.is_alive() or a.state()["active"] == 1,
            timeout=5,
        )
        if a.state()["active"] == 1:
            break
        thread.join(timeout=10)
    assert a.state()["active"] == 1
    cluster.put("vllm-a", a, ready=False, serving=True, terminating=True)
    wait_until(lambda: "pod-a" not in active(gw), what="pod-a drained")
    assert replicas(gw)["pod-a"]["state"] == "leaving"
    assert "from a" not in served_by(sdk, gw, chat, 4)
    thread.join(timeout=20)
    assert pieces == [f"w{i} " for i in range(5)] + ["[end]"]
    wait_until(lambda: "pod-a" not in replicas(gw), what="pod-a gone after its stream")

    # The API server ending the watch: the gateway resumes from its last version.
    cluster.close_watches()
    wait_until(lambda: cluster.state()["open_watches"] == 1, what="the watch resumed")
    assert cluster.state()["lists"] == lists
    cluster.delete("vllm-b")
    wait_until(lambda: "pod-b" not in replicas(gw), what="pod-b removed by its DELETED event")

    # A resume the server can no longer serve (410 Gone): a fresh list, which also sees
    # what changed meanwhile.
    cluster.close_watches(compact=True)
    cluster.put("vllm-b", b)
    wait_until(lambda: "pod-b" in active(gw), what="pod-b back after a relist")
    assert cluster.state()["lists"] == lists + 1
    # Deleting every slice leaves the configured replica alone.
    cluster.delete("vllm-b")
    wait_until(lambda: set(replicas(gw)) == {f"{HOST}:{static.proc.port}"}, what="static only")
