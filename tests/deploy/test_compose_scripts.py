"""What the stacks run besides the servers, run here: the Grafana password guard, the weights
download, scripts/new-env.sh and scripts/refresh-digests.py (with a stand-in `docker`)."""

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.files import COMPOSE, GPU_STACKS, ROOT, STACKS, load_compose, with_defaults

SCRIPTS = ROOT / "scripts"


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, **kwargs)


# -- Grafana refuses to start without a real admin password ---------------------------------


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize(("password", "starts"), [("", False), ("admin", False), ("s3cr3t", True)])
def test_grafana_starts_only_with_a_real_password(
    stack: str, password: str, starts: bool, tmp_path: Path
) -> None:
    entrypoint = load_compose(stack)["services"]["grafana"]["entrypoint"]
    assert entrypoint[:2] == ["/bin/sh", "-c"]
    script = entrypoint[2].replace("$$", "$")  # Compose's escape for a literal $
    assert script.count("exec /run.sh") == 1, "hand over to the image's own entrypoint"
    marker = tmp_path / "started"
    stub = tmp_path / "run.sh"
    stub.write_text(f"#!/bin/sh\ntouch {marker}\n")
    stub.chmod(0o755)
    env = {"PATH": os.environ["PATH"], "GF_SECURITY_ADMIN_PASSWORD": password}
    done = run(["/bin/sh", "-c", script.replace("/run.sh", str(stub))], env=env)
    assert (done.returncode == 0) == starts, done.stderr
    assert marker.exists() == starts
    if not starts:
        assert "GRAFANA_ADMIN_PASSWORD" in done.stderr


# -- the one-shot weights download ------------------------------------------------------------

FAKE_HUB = """
import json, os
def snapshot_download(repo_id, **kwargs):
    with open(os.environ["CALLS"], "a") as calls:
        calls.write(json.dumps({"repo_id": repo_id, **kwargs}) + "\\n")
    return "/cache/" + repo_id
"""


@pytest.mark.parametrize("stack", GPU_STACKS)
def test_download_fetches_every_model_without_the_duplicate_formats(
    stack: str, tmp_path: Path
) -> None:
    service = load_compose(stack)["services"]["download"]
    (tmp_path / "huggingface_hub").mkdir()
    (tmp_path / "huggingface_hub" / "__init__.py").write_text(FAKE_HUB)
    calls = tmp_path / "calls.jsonl"
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "CALLS": str(calls)}
    argv = [sys.executable, *service["entrypoint"][1:], *service["command"]]
    done = run(argv, env=env)
    assert done.returncode == 0, done.stderr
    made = [json.loads(line) for line in calls.read_text().splitlines()]
    assert [call["repo_id"] for call in made] == service["command"]
    for call in made:
        assert {"original/*", "*.pt"} <= set(call["ignore_patterns"])  # Llama's, Mixtral's copies
        assert "allow_patterns" not in call
    assert done.stdout.count("download:") == len(made)


# -- scripts/new-env.sh ---------------------------------------------------------------------------


def new_env(target: Path) -> subprocess.CompletedProcess[str]:
    return run(["bash", str(SCRIPTS / "new-env.sh"), str(target)])


def read_env(path: Path) -> dict[str, str]:
    pairs = re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", path.read_text(), flags=re.MULTILINE)
    return dict(pairs)


def test_new_env_generates_the_secrets_and_keeps_them_private(tmp_path: Path) -> None:
    first, second = tmp_path / "a.env", tmp_path / "b.env"
    assert new_env(first).returncode == 0 and new_env(second).returncode == 0
    a, b = read_env(first), read_env(second)
    for name in ("GATEWAY_ADMIN_KEY", "GRAFANA_ADMIN_PASSWORD"):
        assert re.fullmatch(r"[0-9a-f]{40}", a[name]), name
        assert a[name] != b[name]
    assert a["GATEWAY_ADMIN_KEY"] != a["GRAFANA_ADMIN_PASSWORD"]
    assert a["HF_TOKEN"] == ""  # the user's to fill in
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    example = read_env(ROOT / ".env.example")
    assert a.keys() == example.keys()
    changed = {name for name in example if a[name] != example[name]}
    assert changed == {"GATEWAY_ADMIN_KEY", "GRAFANA_ADMIN_PASSWORD"}


def test_new_env_never_overwrites(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    target.write_text("HF_TOKEN=hf_mine\n")
    done = new_env(target)
    assert done.returncode == 1 and "not overwriting" in done.stderr
    assert target.read_text() == "HF_TOKEN=hf_mine\n"


def interpolate_all(node: Any, values: dict[str, str]) -> None:
    """Interpolate every string of a compose file; LookupError on a missing required variable."""
    if isinstance(node, dict):
        for value in node.values():
            interpolate_all(value, values)
    elif isinstance(node, list):
        for value in node:
            interpolate_all(value, values)
    elif isinstance(node, str):
        with_defaults(node, values)


def test_a_new_env_is_all_the_sim_stack_needs(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    assert new_env(target).returncode == 0
    values = read_env(target)
    interpolate_all(load_compose("sim"), values)
    # The GPU stacks also need the user's HF_TOKEN (and, for kvcached, a pinned digest).
    with pytest.raises(LookupError, match="HF_TOKEN"):
        interpolate_all(load_compose("baseline"), values)
    values["HF_TOKEN"] = "hf_x"
    interpolate_all(load_compose("baseline"), values)


# -- scripts/refresh-digests.py ---------------------------------------------------------------

FAKE_DOCKER = """#!{python}
# docker buildx imagetools inspect REF --format FORMAT, answered from a table or a hash.
import hashlib, json, os, sys
ref = sys.argv[4]
assert sys.argv[1:4] == ["buildx", "imagetools", "inspect"] and sys.argv[5] == "--format"
if ref in os.environ.get("UNKNOWN", "").split(","):
    sys.exit("ERROR: " + ref + ": not found")
salted = os.environ.get("SALT", "") + ref
print(json.dumps("sha256:" + hashlib.sha256(salted.encode()).hexdigest()))
"""


def digest_of(ref: str, salt: str = "") -> str:
    return "sha256:" + hashlib.sha256((salt + ref).encode()).hexdigest()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of the pinned files, and a `docker` that answers imagetools inspect."""
    root = tmp_path / "repo"
    shutil.copytree(COMPOSE, root / "compose")
    (root / "docker").mkdir()
    shutil.copy2(ROOT / "docker" / "Dockerfile", root / "docker" / "Dockerfile")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER.format(python=sys.executable))
    (bin_dir / "docker").chmod(0o755)
    return root


def refresh(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    path = f"{root.parent / 'bin'}{os.pathsep}{os.environ['PATH']}"
    argv = [sys.executable, str(SCRIPTS / "refresh-digests.py"), "--root", str(root), *args]
    return run(argv, env={**os.environ, "PATH": path, **env})


def unpinned(text: str) -> str:
    return re.sub(r"@(sha256:[0-9a-f]{64}|\$\{[^}]*\})", "@", text)


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_check_reports_stale_and_unpinned_images_and_changes_nothing(repo: Path) -> None:
    before = snapshot(repo)
    done = refresh(repo, "--check")
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    # vLLM, kvcached, Prometheus, Grafana and Python: each named once, whatever its files.
    assert len(lines) == 5
    assert {line.split()[0] for line in lines} == {"stale", "unpinned"}
    assert "unpinned ghcr.io/ovg-project/kvcached-vllm:kvcached-v0.1.6-vllm-v0.30.0@" in done.stdout
    assert f"stale    python:3.11.14-slim-bookworm@{digest_of('python:3.11.14-slim-bookworm')}" in (
        done.stdout
    )
    assert snapshot(repo) == before


def test_refresh_pins_every_image_then_check_passes(repo: Path) -> None:
    done = refresh(repo)
    assert done.returncode == 0, done.stderr
    managed = (repo / "compose" / "managed.yaml").read_text()
    kvcached = "ghcr.io/ovg-project/kvcached-vllm:kvcached-v0.1.6-vllm-v0.30.0"
    assert f"image: {kvcached}@{digest_of(kvcached)}\n" in managed
    assert "KVCACHED_VLLM_DIGEST" not in managed
    dockerfile = (repo / "docker" / "Dockerfile").read_text()
    assert f"python:3.11.14-slim-bookworm@{digest_of('python:3.11.14-slim-bookworm')}" in dockerfile
    check = refresh(repo, "--check")
    assert check.returncode == 0, check.stdout
    assert all(line.startswith("ok ") for line in check.stdout.splitlines())
    # A tag that moves (the registry answers differently) is stale again.
    assert refresh(repo, "--check", SALT="moved").returncode == 1
    # Nothing but the digests changed.
    for path in (repo / "compose").glob("*.yaml"):
        assert unpinned(path.read_text()) == unpinned((COMPOSE / path.name).read_text()), path


def test_tag_changes_a_tag_and_its_digest_together(repo: Path) -> None:
    done = refresh(repo, "--tag", "vllm/vllm-openai=v0.30.0-cu129")
    assert done.returncode == 0, done.stderr
    baseline = (repo / "compose" / "baseline.yaml").read_text()
    ref = "vllm/vllm-openai:v0.30.0-cu129"
    assert f"image: {ref}@{digest_of(ref)}\n" in baseline
    assert "vllm/vllm-openai:v0.30.0@" not in baseline


def test_a_tag_the_registry_does_not_know_fails_without_writing(repo: Path) -> None:
    before = snapshot(repo)
    kvcached = "ghcr.io/ovg-project/kvcached-vllm:kvcached-v0.1.6-vllm-v0.30.0"
    done = refresh(repo, UNKNOWN=kvcached)
    assert done.returncode == 1
    assert f"cannot resolve {kvcached}" in done.stderr and "not found" in done.stderr
    assert snapshot(repo) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tag", "vllm/vllm-openai"], "REPOSITORY=TAG"),
        (["--tag", "nosuch/image=v1"], "no pinned image of nosuch/image"),
        (["--check", "--tag", "vllm/vllm-openai=v1"], "do not go together"),
    ],
)
def test_bad_arguments_are_refused_with_a_reason(repo: Path, args: list[str], message: str) -> None:
    before = snapshot(repo)
    done = refresh(repo, *args)
    assert done.returncode != 0 and message in done.stderr
    assert snapshot(repo) == before
