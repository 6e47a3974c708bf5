"""bench/chaos.py, shortened: replicas killed, hung, slowed and restarted under streaming
load. Every request that had not started streaming is served, a stream cut after it started
ends with an SSE error event, none ends silently, and in-flight counts return to 0."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_chaos_loses_nothing_that_could_be_served(tmp_path: Path) -> None:
    out = tmp_path / "chaos.json"
    argv = [sys.executable, str(ROOT / "bench" / "chaos.py"), "--duration", "20", "--rate", "15",
            "--json", str(out)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(out.read_text())
    assert len(figures["schedule"]) == 6, figures
    # The faults bit: the gateway saw failures and moved requests.
    assert figures["upstream_errors"], figures
    assert figures["errors_seen_by_clients"] == 0, figures
    assert figures["streams_ended_silently"] == 0, figures
    assert figures["served"] + figures["streams_cut_with_sse_error"] == figures["sent"], figures
    assert figures["in_flight_after"] == 0, figures
