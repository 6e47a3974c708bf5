"""What the image installs: the Dockerfile's build context, built as a wheel, has every file."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.deploy.files import ROOT

CONTEXT = ("pyproject.toml", "constraints.txt", "README.md", "gateway", "routers", "loadtest")
PACKAGES = ("gateway", "routers", "loadtest")


def package_files() -> set[str]:
    """Files the packages ship, as the wheel names them (no caches)."""
    return {
        path.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for path in (ROOT / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def test_non_editable_install_ships_every_package_file(tmp_path: Path) -> None:
    context = tmp_path / "context"
    for name in CONTEXT:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            context.mkdir(exist_ok=True)
            shutil.copy2(source, context / name)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), "."],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = tmp_path.glob("turnout-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = package_files() - names
    assert not missing, f"a non-editable install (the image) would lack {sorted(missing)}"
    (entry_points,) = [name for name in names if name.endswith("entry_points.txt")]
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    for script in ("gateway =", "loadtest =", "vllm-sim ="):
        assert script in scripts
