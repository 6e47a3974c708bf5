import sys

import httpx
import pytest

from tests.procs import start


def test_spawn_serves_then_stops(spawn) -> None:  # type: ignore[no-untyped-def]
    proc = spawn(
        [sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1"], ready_path="/"
    )
    assert httpx.get(proc.url + "/").status_code == 200
    assert proc.stop() is not None
    assert proc.popen.poll() is not None


def test_start_reports_a_process_that_dies() -> None:
    with pytest.raises(RuntimeError, match="exited with 3"):
        start([sys.executable, "-c", "import sys; sys.exit(3)"], port=1, timeout=5)
