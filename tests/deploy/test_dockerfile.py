"""The project image's Dockerfile: pinned base, locked install, non-root, health-checked."""

import json
import os
import re
import subprocess
import sys

from tests.deploy.conftest import LiveGateway
from tests.deploy.files import ROOT
from tests.procs import free_port

DOCKERFILE = (ROOT / "docker" / "Dockerfile").read_text()
# Instructions with their continuation lines joined, comments dropped.
INSTRUCTIONS = [
    line.strip()
    for line in re.sub(r"\\\n", " ", DOCKERFILE).splitlines()
    if line.strip() and not line.lstrip().startswith("#")
]


def instructions(keyword: str) -> list[str]:
    return [line.split(None, 1)[1] for line in INSTRUCTIONS if line.split()[0].upper() == keyword]


def build_args() -> dict[str, str]:
    return dict(arg.split("=", 1) for arg in instructions("ARG") if "=" in arg)


def test_is_multi_stage_on_a_pinned_slim_python_311() -> None:
    froms = [re.sub(r"\$\{(\w+)\}", lambda m: build_args()[m[1]], f) for f in instructions("FROM")]
    assert len(froms) >= 2, "build and runtime stages"
    for line in froms:
        image = line.split()[0]
        if image in {f.split()[-1] for f in froms if " AS " in f.upper()}:
            continue  # a previous stage
        reference, _, digest = image.partition("@")
        repository, _, tag = reference.partition(":")
        assert repository == "python", image
        assert re.fullmatch(r"3\.11\.\d+-slim(-\w+)?", tag), f"{image} is not a pinned 3.11 slim"
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), f"{image} is not pinned by digest"


def test_runs_as_a_non_root_user() -> None:
    user = instructions("USER")[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert INSTRUCTIONS[-1].split()[0] in {"CMD", "ENTRYPOINT"}
    last_user = max(i for i, line in enumerate(INSTRUCTIONS) if line.startswith("USER"))
    assert not any(line.startswith("RUN") for line in INSTRUCTIONS[last_user:]), "RUN after USER"


def test_has_a_healthcheck_on_health() -> None:
    (healthcheck,) = instructions("HEALTHCHECK")
    assert "CMD" in healthcheck and "TURNOUT_HEALTH_URL" in healthcheck
    assert "TURNOUT_HEALTH_URL=http://127.0.0.1:8080/health" in " ".join(instructions("ENV"))


def test_installs_from_the_lock() -> None:
    installs = [run for run in instructions("RUN") if "pip install" in run]
    assert installs
    for run in installs:
        for command in re.split(r"&&", run):
            if "pip install" in command:
                assert "-c constraints.txt" in command, command


def test_nothing_architecture_specific() -> None:
    assert not re.search(r"amd64|x86_64|aarch64|arm64|--platform", " ".join(INSTRUCTIONS))


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert "**" in lines, "ignore everything by default"
    sources = [
        line.split()[1:-1]
        for line in INSTRUCTIONS
        if line.startswith("COPY ") and "--from" not in line
    ]
    copied = {path.rstrip("/") for paths in sources for path in paths}
    assert {
        "pyproject.toml",
        "constraints.txt",
        "gateway",
        "routers",
        "loadtest",
        "turnout",
    } <= copied
    for path in copied:
        assert f"!{path}" in lines or f"!{path}/**" in lines, f"{path} is COPYed but ignored"


def healthcheck_argv() -> list[str]:
    (healthcheck,) = instructions("HEALTHCHECK")
    argv: list[str] = json.loads(healthcheck.split(" CMD ", 1)[1])
    return argv


def run_healthcheck(url: str) -> int:
    argv = healthcheck_argv()
    assert argv[0] == "python"
    env = {**os.environ, "TURNOUT_HEALTH_URL": url}
    result = subprocess.run([sys.executable, *argv[1:]], env=env, timeout=30, check=False)
    return result.returncode


def test_healthcheck_passes_on_a_healthy_gateway_and_fails_otherwise(
    live_gateway: LiveGateway,
) -> None:
    assert run_healthcheck(live_gateway.url + "/health") == 0
    assert run_healthcheck(live_gateway.url + "/no-such-page") != 0
    assert run_healthcheck(f"http://127.0.0.1:{free_port()}/health") != 0
