"""bench/soak.py for one minute: 500 streams, 10% of clients leaving mid-stream. No errors,
in-flight back to 0, and once the load is gone the gateway holds no more descriptors than
before it (its memory, loosely bounded here, is for the long run in docs/gateway.md)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_minute_of_500_streams_leaks_nothing(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    argv = [sys.executable, str(ROOT / "bench" / "soak.py"), "--duration", "60",
            "--sample", "5", "--warmup", "20", "--json", str(out)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=115)
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(out.read_text())
    counts = figures["counts"]
    assert counts["errors"] == 0, figures
    assert counts["completed"] > 1000 and counts["aborted"] > 50, counts
    assert figures["in_flight_after"] == 0
    # 500 client and ~500 upstream sockets while it ran; afterwards, as few as at the start.
    assert figures["fds"]["max"] > 500
    assert figures["after_load"]["fds"] <= figures["fds"]["first"] + 10, figures["after_load"]
    assert figures["after_load"]["rss_mb"] < figures["rss_mb"]["first"] + 150, figures["rss_mb"]
