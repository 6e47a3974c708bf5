"""A strategy from a separate package, installed the way users install one, found by name.

The package (tests/plugin_pkg) is built and installed with pip into a temporary
directory, never into the venv, so nothing is left behind: this process sees it
through sys.path, a gateway process through PYTHONPATH.
"""

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

import routers
from routers import RouteRequest
from tests.loadtest.sim.serving import MODEL, serve_argv
from tests.procs import Proc, bin_path
from tests.routers.views import view

PLUGIN_SOURCE = Path(__file__).parent.parent / "plugin_pkg"
PLUGIN_NAME = "least_loaded_test"


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the installed plugin (its code and dist-info)."""
    pytest.importorskip("setuptools", reason="the plugin package builds with setuptools")
    root = tmp_path_factory.mktemp("plugin")
    # Build from a copy: an in-tree build would leave build/ and *.egg-info behind.
    source = shutil.copytree(PLUGIN_SOURCE, root / "src")
    target = root / "site"
    subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--no-deps", "--no-build-isolation", "--no-cache-dir", "--no-index",
            "--target", str(target), str(source),
        ],
        check=True,
        timeout=90,
    )  # fmt: skip
    return target


@pytest.fixture
def plugin_on_path(plugin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(plugin_dir))
    yield plugin_dir
    sys.modules.pop("turnout_plugin_demo", None)


def test_not_installed_means_not_available() -> None:
    assert PLUGIN_NAME not in routers.available()


def test_installed_plugin_is_found_and_loaded_by_name(plugin_on_path: Path) -> None:
    assert PLUGIN_NAME in routers.available()
    strategy = routers.load(PLUGIN_NAME)
    assert strategy.name == PLUGIN_NAME
    assert type(strategy).__module__ == "turnout_plugin_demo"
    # Its own rule, not a built-in's: fewest in flight, ties to the id that sorts last.
    request = RouteRequest(model="m")
    idle = [view("r0"), view("r1"), view("r2")]
    assert [strategy.choose(request, idle).id for _ in range(3)] == ["r2"] * 3  # type: ignore[union-attr]
    busy = [view("r0", in_flight=1), view("r1", in_flight=0), view("r2", in_flight=3)]
    assert strategy.choose(request, busy) == busy[1]
    assert strategy.choose(request, []) is None


def test_a_gateway_started_with_the_plugins_name_routes_with_it(
    plugin_dir: Path, spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    sims = [spawn(serve_argv()) for _ in range(3)]
    replicas = tmp_path / "replicas.yaml"
    entries = [{"url": sim.url, "name": f"r{i}"} for i, sim in enumerate(sims)]
    replicas.write_text(yaml.safe_dump({"replicas": entries}))
    env = {
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(plugin_dir), os.environ.get("PYTHONPATH")])
        ),
        "GATEWAY_REPLICAS_FILE": str(replicas),
        "GATEWAY_STRATEGY": PLUGIN_NAME,
        "GATEWAY_LOG_LEVEL": "warning",
    }
    gw = spawn([bin_path("gateway"), "--port", "{port}"], env=env)
    assert httpx.get(gw.url + "/admin/replicas", timeout=5).json()["strategy"] == PLUGIN_NAME

    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, timeout=10)
    with client:
        seen = []
        for _ in range(4):
            raw = client.chat.completions.with_raw_response.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2
            )
            raw.parse()
            seen.append(raw.headers["x-turnout-replica"])
    # Sequential requests on an idle fleet: the plugin's rule sends all to the last id
    # (round_robin would rotate, queue_depth would spread at random).
    assert seen == ["r2"] * 4
