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


def load(tmp_path: Path, text: str) -> list[ReplicaEntry]:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return load_replica_specs(GatewaySettings(replicas_file=path))


def test_kinds_aliases_and_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAMPLE_KEY", "sk-secret-123")
    specs = load(
        tmp_path,
        "- {url: 'http://a:1', name: spark, kind: ollama,"
        "   aliases: {meta-llama/Llama-3.1-8B-Instruct: 'llama3.1:8b'}}\n"
        "- {url: 'https://api.example.com', kind: openai, api_key_env: EXAMPLE_KEY}\n",
    )
    assert specs[0].kind == "ollama"
    assert specs[0].aliases == (("meta-llama/Llama-3.1-8B-Instruct", "llama3.1:8b"),)
    assert specs[1].api_key == "sk-secret-123"
    assert "sk-secret" not in repr(specs[1])
    replica = specs[1].to_replica()
    assert replica.authorization == b"Bearer sk-secret-123"
    assert "sk-secret" not in repr(replica)
    assert replica.kind is not None and replica.kind.name == "openai"


def test_pinned_models_are_own_names_shown_under_their_aliases(tmp_path: Path) -> None:
    (spec,) = load(
        tmp_path,
        "- {url: 'http://a:1', models: ['qwen2.5:7b', 'phi4'], aliases: {qwen: 'qwen2.5:7b'}}\n",
    )
    assert spec.to_replica().models == ("phi4", "qwen")


@pytest.mark.parametrize(
    ("entries", "words"),
    [
        ("- {url: 'http://a:1', kind: tgi}", ["replica 0 (a:1)", "unknown kind 'tgi'", "ollama"]),
        (
            "- {url: 'http://a:1', name: o, aliases: {x: 'tag', y: 'tag'}}",
            ["replica 0 (o)", "'x' and 'y' both map to 'tag'"],
        ),
        (
            "- {url: 'http://a:1', aliases: {x: y, y: z}}",
            ["replica 0 (a:1)", "'y' is a public name and also the own name", "do not chain"],
        ),
        (
            "- {url: 'http://a:1', models: [m, tag], aliases: {m: tag}}",
            ["'m' is also in models"],
        ),
        (
            "- {url: 'http://a:1', models: [m], aliases: {x: tag}}",
            ["'tag', which is not in models"],
        ),
        (
            "- {url: 'http://a:1', name: one, aliases: {x: 'tag'}}\n"
            "- {url: 'http://b:1', name: two, aliases: {tag: 'other'}}",
            ["replica two", "alias 'tag'", "replica one hides"],
        ),
        ("- {url: 'http://a:1', aliases: {'': 'tag'}}", ["names must not be empty"]),
        (
            "- {url: 'http://a:1', kind: openai, api_key_env: TURNOUT_TEST_UNSET_KEY}",
            ["replica 0 (a:1)", "TURNOUT_TEST_UNSET_KEY is not set"],
        ),
        (
            '- {url: "http://a:1", kind: openai, api_key: "sk-1\\r\\nx-injected: 1"}',
            ["replica 0 (a:1)", "control characters"],
        ),
    ],
    ids=[
        "unknown-kind",
        "two-aliases-one-model",
        "chain",
        "alias-hides-model",
        "alias-of-nothing",
        "across-replicas",
        "empty",
        "missing-key",
        "key-with-line-break",
    ],
)
def test_bad_entries_name_the_replica(tmp_path: Path, entries: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, entries + "\n")
    message = str(caught.value)
    assert "\n" not in message and "r.yaml" in message
    for word in words:
        assert word in message
