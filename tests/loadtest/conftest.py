import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.procs import Proc

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake_openai(spawn: Callable[..., Proc]) -> Callable[..., Proc]:
    """fake_openai(ttft=..., gap=..., fail_every=..., break_every=..., replica=...) -> Proc."""

    def start(**options: object) -> Proc:
        argv = [sys.executable, "-m", "tests.loadtest.fake_openai", "--port", "{port}"]
        for key, value in options.items():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        return spawn(argv, env={"PYTHONPATH": str(ROOT)})

    return start
