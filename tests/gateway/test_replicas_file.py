from pathlib import Path

import pytest

from gateway.replicas_file import ConfigError, ReplicaEntry, load_replica_specs, normalize_url
from gateway.settings import GatewaySettings


def test_urls_get_host_port_names() -> None:
    settings = GatewaySettings(replicas="http://10.0.0.1:8000/, https://gpu-2.internal")
    assert load_replica_specs(settings) == [
        ReplicaEntry(name="10.0.0.1:8000", url="http://10.0.0.1:8000"),
        ReplicaEntry(name="gpu-2.internal:443", url="https://gpu-2.internal"),
    ]


def test_file_gives_names_and_pinned_models(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        "replicas:\n"
        "  - url: http://a:1\n    name: llama-0\n    models: [meta-llama/Llama-3.1-8B-Instruct]\n"
        "  - url: http://b:2/prefix/\n"
    )
    specs = load_replica_specs(GatewaySettings(replicas_file=path))
    assert specs == [
        ReplicaEntry("llama-0", "http://a:1", ("meta-llama/Llama-3.1-8B-Instruct",)),
        ReplicaEntry("b:2", "http://b:2/prefix"),
    ]
    pinned, discovered = (spec.to_replica() for spec in specs)
    assert pinned.models_pinned and not discovered.models_pinned


def test_a_plain_list_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("- url: http://a:1\n- {url: 'http://a:2', name: two}\n")
    assert [s.name for s in load_replica_specs(GatewaySettings(replicas_file=path))] == [
        "a:1",
        "two",
    ]


@pytest.mark.parametrize("url", ["a:1", "ftp://a:1", "http://", "http://a:99999", "http://a:1?x=1"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(ConfigError, match="replica URL"):
        normalize_url(url)
