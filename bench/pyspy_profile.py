"""Where a process spends its CPU under load: py-spy records it (sampling from outside,
`--nonblocking`, idle threads left out) while a load runs, and the top functions are
printed, inclusive and self. py-spy is a profiling tool, not a dependency:
`.venv/bin/pip install py-spy` (it reads another process's memory, so it may need root or
`kernel.yama.ptrace_scope=0`)."""

import collections
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.procs import Proc

_FRAME = re.compile(r"(.*) \((.*?)(?::\d+)?\)$")
# Frames this much of the samples pass through are the entry points (cli, uvicorn, the loop).
_ENTRY_SHARE = 0.85


def record(proc: Proc, out: Path, load: Callable[[], Any], seconds: float = 10.0) -> bool:
    """Record `proc` with py-spy while `load()` runs (about `seconds`); False if it failed."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("--profile: py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return False
    argv = [spy, "record", "--nonblocking", "--rate", "250", "--format", "raw"]
    argv += ["--duration", str(int(seconds)), "--output", str(out), "--pid", str(proc.popen.pid)]
    recorder = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    load()
    _, err = recorder.communicate(timeout=seconds + 30)
    if recorder.returncode != 0 or not out.exists():
        print(f"--profile: py-spy failed: {err.decode(errors='replace')[-500:]}", file=sys.stderr)
        return False
    return True


def _name(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match.group(2).split("site-packages/")[-1]
    for package in ("gateway/", "routers/", "turnout/"):
        if f"/{package}" in path:
            path = package + path.split(f"/{package}", 1)[1]
    return f"{match.group(1)} ({path})"


def print_top(path: Path, count: int = 30) -> None:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        n = int(samples)
        total += n
        names = [_name(f) for f in stack.split(";")]
        for name in set(names):
            inclusive[name] += n
        own[names[-1]] += n
    if not total:
        print("no samples")
        return
    print(f"{total} samples; share of them in each function (and what it calls):")
    shown = [(n, c) for n, c in inclusive.most_common() if c < _ENTRY_SHARE * total][:count]
    for name, samples in shown:
        print(f"  {100 * samples / total:5.1f}%  {name}")
    print("self (the function's own lines; C calls and syscalls count for their caller):")
    for name, samples in own.most_common(count // 2):
        print(f"  {100 * samples / total:5.1f}%  {name}")
