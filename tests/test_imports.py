"""The walls between packages: who may import whom, read from the source of every module.

- routers/ is the pure routing model: it imports nothing of ours.
- the gateway never imports loadtest; the simulator (loadtest.sim) never imports the gateway.
- turnout/ is shared by both sides, so it imports neither.
"""

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("gateway", "routers", "loadtest", "turnout")
# (importer prefix, forbidden prefixes)
WALLS = (
    ("routers", ("gateway", "loadtest", "turnout")),
    ("gateway", ("loadtest",)),
    ("loadtest.sim", ("gateway",)),
    ("turnout", ("gateway", "loadtest")),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, module: str) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in the file of `module`, lazy ones too."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                base = ".".join([*anchor[: len(anchor) - node.level + 1], base]).strip(".")
            yield node.lineno, base


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def sources() -> list[Path]:
    return sorted(p for top in OURS for p in (ROOT / top).rglob("*.py"))


def test_every_package_is_walked() -> None:
    names = {module_name(p) for p in sources()}
    assert {"gateway.proxy", "routers.types", "loadtest.sim.engine", "turnout.logs"} <= names


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_respect_the_walls(path: Path) -> None:
    importer = module_name(path)
    broken = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for importer_prefix, forbidden in WALLS
        if within(importer, importer_prefix)
        for line, name in imported(path, importer)
        for prefix in forbidden
        if within(name, prefix)
    ]
    assert not broken, "\n".join(broken)


def test_the_walk_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from routers.pool import ReplicaPool\n    from . import x\n")
    found = list(imported(probe, "routers.sub.probe"))
    assert (2, "routers.pool") in found
    assert (3, "routers.sub") in found
