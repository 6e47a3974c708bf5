"""A strategy from a separate package, installed the way users install one, found by name.

The package (tests/plugin_pkg) is built and installed with pip into a temporary
directory, never into the venv, so nothing is left behind: this process sees it
through sys.path, a gateway process through PYTHONPATH.
"""

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import routers
from routers import RouteRequest
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
    sys.modules.pop("switchyard_plugin_demo", None)


def test_not_installed_means_not_available() -> None:
    assert PLUGIN_NAME not in routers.available()


def test_installed_plugin_is_found_and_loaded_by_name(plugin_on_path: Path) -> None:
    assert PLUGIN_NAME in routers.available()
    strategy = routers.load(PLUGIN_NAME)
    assert strategy.name == PLUGIN_NAME
    assert type(strategy).__module__ == "switchyard_plugin_demo"
    # Its own rule, not a built-in's: fewest in flight, ties to the id that sorts last.
    request = RouteRequest(model="m")
    idle = [view("r0"), view("r1"), view("r2")]
    assert [strategy.choose(request, idle).id for _ in range(3)] == ["r2"] * 3  # type: ignore[union-attr]
    busy = [view("r0", in_flight=1), view("r1", in_flight=0), view("r2", in_flight=3)]
    assert strategy.choose(request, busy) == busy[1]
    assert strategy.choose(request, []) is None
