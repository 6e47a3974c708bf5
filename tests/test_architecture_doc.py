"""docs/architecture.md's map lists exactly the modules the packages hold."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("routers", "turnout", "gateway", "loadtest")


def mapped() -> tuple[set[str], set[str]]:
    """(files, directories) named in the map, as paths from the repository root."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"## The map\n\n```\n(.*?)```", text, flags=re.S)
    assert block, "docs/architecture.md has no code block under '## The map'"
    files: set[str] = set()
    dirs: set[str] = set()
    stack: list[str] = []
    for line in block.group(1).splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 2
        name = line.split()[0]
        del stack[depth:]
        path = "/".join([*stack, name.rstrip("/")])
        if name.endswith("/"):
            dirs.add(path)
            stack.append(name.rstrip("/"))
        else:
            files.add(path)
    return files, dirs


def on_disk() -> set[str]:
    found = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*"):
            relative = path.relative_to(ROOT)
            module = path.suffix in (".py", ".yaml") and path.name != "__init__.py"
            # Built-in workloads are data, listed by their folder.
            if module and "builtin" not in relative.parts:
                found.add(str(relative))
    return found


def test_the_map_lists_every_module_and_no_other() -> None:
    files, dirs = mapped()
    assert sorted(files - on_disk()) == [], "listed in the map but not in the tree"
    assert sorted(on_disk() - files) == [], "in the tree but missing from the map"
    assert all((ROOT / d).is_dir() for d in dirs)
    assert set(PACKAGES) <= dirs
