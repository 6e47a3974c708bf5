import signal
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
import structlog

from tests.procs import Proc, free_port, start


def pytest_configure(config: pytest.Config) -> None:
    # Started in the background by a shell without job control (`(cmd &)`), the tests
    # inherit an ignored SIGINT, and so would every process they start: the Ctrl-C tests
    # then fail. A handled SIGINT is reset to the default at exec, so children answer it.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


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


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    # structlog's configuration is process-wide; a test that configured it may have
    # pointed it at a captured stream that is closed by now.
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
