"""`gateway` start-up: every setting is an option; a configuration that cannot work stops
with one clear line and exit code 2."""

import subprocess
from pathlib import Path

import pytest

from gateway.settings import GatewaySettings
from tests.procs import bin_path


def run_gateway(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {"PATH": "/usr/bin:/bin", **(env or {})}
    return subprocess.run(
        [bin_path("gateway"), *args], capture_output=True, text=True, timeout=30, env=clean
    )


def test_every_setting_is_an_option() -> None:
    result = run_gateway("--help")
    assert result.returncode == 0
    for field in GatewaySettings.model_fields:
        assert f"--{field.replace('_', '-')}" in result.stdout
        assert f"GATEWAY_{field.upper()}" in result.stdout.replace("\n", "").replace(" ", "")


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        (["--replicas", "http://127.0.0.1:9", "--strategy", "fastest"], {},
         ["unknown strategy 'fastest'", "available: ", "least_work", "round_robin"]),
        ([], {"GATEWAY_STRATEGY": "nope", "GATEWAY_REPLICAS": "http://127.0.0.1:9"},
         ["unknown strategy 'nope'", "round_robin"]),
        ([], {}, ["no replicas", "GATEWAY_REPLICAS", "GATEWAY_REPLICAS_FILE"]),
        (["--replicas", " , "], {}, ["no replicas"]),
        (["--replicas", "localhost:8000"], {}, ["'localhost:8000'", "http(s)://host:port"]),
        (["--replicas", "http://127.0.0.1:9", "--port", "70000"], {}, ["--port", "65535"]),
        (["--replicas", "http://127.0.0.1:9", "--log-level", "loud"], {},
         ["'loud'", "debug, info, warning, error"]),
        (["--replicas", "http://a:1,http://a:1"], {}, ["duplicate replica names: a:1"]),
        (["--replicas", "http://127.0.0.1:9", "--strategy=p2c", "--strategy-options=choises=3"],
         {}, ["--strategy-options / GATEWAY_STRATEGY_OPTIONS", "no option 'choises'",
              "choices (an integer, default 2)"]),
        ([], {"GATEWAY_REPLICAS": "http://127.0.0.1:9", "GATEWAY_STRATEGY": "p2c",
              "GATEWAY_STRATEGY_OPTIONS": '{"choices": "two"}'},
         ["GATEWAY_STRATEGY_OPTIONS", "option 'choices'", "'two' is not an integer"]),
        ([], {"GATEWAY_REPLICAS": "http://127.0.0.1:9", "GATEWAY_STRATEGY_OPTIONS": "seed"},
         ["GATEWAY_STRATEGY_OPTIONS", "'seed' is not key=value"]),
        ([], {"GATEWAY_REPLICAS": "http://127.0.0.1:9", "GATEWAY_STRATEGY": "least_work",
              "GATEWAY_STRATEGY_OPTIONS": "decode_weight=-1"},
         ["GATEWAY_STRATEGY_OPTIONS", "decode_weight must be at least 0"]),
    ],
)  # fmt: skip
def test_bad_configuration_stops_with_one_line(
    args: list[str], env: dict[str, str], words: list[str]
) -> None:
    result = run_gateway(*args, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gateway: error: ")
    for word in words:
        assert word in lines[0]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("replicas: [\n  - url: http://a:1\n  bad", ["not valid YAML"]),
        ("url: http://a:1\n", ["expected a list of replicas"]),
        (
            "- name: a\n",
            [
                "replica 0",
                "url: Field required",
                "allowed keys: url, name, kind, models, aliases, api_key, api_key_env",
            ],
        ),
        ("- url: http://a:1\n  weight: 3\n", ["replica 0", "weight", "allowed keys"]),
        ("- url: http://a:1\n  models: llama\n", ["replica 0", "models"]),
        ("[]", ["no replicas"]),
    ],
)
def test_malformed_replicas_file_stops_with_one_line(
    content: str, words: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "replicas.yaml"
    path.write_text(content)
    result = run_gateway("--replicas-file", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0] or "no replicas" in lines[0]
    for word in words:
        assert word in lines[0]


def test_missing_replicas_file(tmp_path: Path) -> None:
    result = run_gateway(env={"GATEWAY_REPLICAS_FILE": str(tmp_path / "absent.yaml")})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"gateway: error: replicas file {tmp_path / 'absent.yaml'}: cannot read "
        "(No such file or directory)"
    ]
