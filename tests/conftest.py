from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from tests.procs import Proc, free_port, start


@pytest.fixture
def spawn() -> Iterator[Callable[..., Proc]]:
    """spawn(argv_with_{port}, **kw) starts a process on a free port; all are stopped after."""
    started: list[Proc] = []

    def _spawn(argv: Sequence[str], **kwargs: Any) -> Proc:
        port = kwargs.pop("port", None) or free_port()
        proc = start([arg.format(port=port) for arg in argv], port=port, **kwargs)
        started.append(proc)
        return proc

    yield _spawn
    for proc in reversed(started):
        proc.stop()
