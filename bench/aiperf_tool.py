"""AIPerf (github.com/ai-dynamo/aiperf, NVIDIA's successor to genai-perf) as the cross-check's
reference tool: installed once in its own venv, run offline on a given schedule, read back.

Why AIPerf: it installs on Python 3.11 without torch (GuideLLM pulls a CUDA torch, 6 GB;
inference-perf needs Python 3.12; `vllm bench serve` needs all of vLLM), and it can replay an
exact schedule (`--custom-dataset-type single_turn --fixed-schedule`: a JSONL file with each
request's `timestamp` in ms, `text` and `output_length`).

Offline: AIPerf loads `--tokenizer PATH` with transformers' AutoTokenizer. With HF_HUB_OFFLINE
set (to anything, even 0) AIPerf 0.13.0 resolves the tokenizer through the hub's cache and
refuses a local path, so the variable is removed for its process; HF_ENDPOINT points at a
closed local port so that any hub call fails at once instead of hanging. AIPerf keeps its
ZMQ sockets (paths of at most 107 characters) and its dataset memory map (which it leaves
behind) under TMPDIR: a short directory of its own, removed after the run.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

VERSION = "0.13.0"
HERE = Path(__file__).resolve().parent
CONSTRAINTS = HERE / f"aiperf-{VERSION}-constraints.txt"
INSTALL_TIMEOUT_S = 900


def default_cache_dir() -> Path:
    """$TURNOUT_CROSSCHECK_CACHE, else $XDG_CACHE_HOME/turnout/crosscheck (~/.cache/...)."""
    if os.environ.get("TURNOUT_CROSSCHECK_CACHE"):
        return Path(os.environ["TURNOUT_CROSSCHECK_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "turnout" / "crosscheck"


def _wanted() -> str:
    pins = CONSTRAINTS.read_bytes()
    identity = f"{VERSION}\n{sys.version_info[:2]}\n".encode() + pins
    return hashlib.sha256(identity).hexdigest()


def ensure_aiperf(cache_dir: Path, *, say: object = print) -> Path:
    """The venv holding the pinned AIPerf under `cache_dir`, made if missing or stale.
    Returns the `aiperf` executable. Safe when two processes ask at once (a file lock)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    venv = cache_dir / f"aiperf-{VERSION}"
    stamp = venv / ".turnout-installed"
    executable = venv / "bin" / "aiperf"
    with (cache_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.is_file() and stamp.read_text() == _wanted() and executable.is_file():
            return executable
        say(f"installing AIPerf {VERSION} in {venv} (once; about 1-2 minutes)")  # type: ignore[operator]
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run(
            [*pip, "--disable-pip-version-check", "-c", str(CONSTRAINTS), f"aiperf=={VERSION}"],
            check=True,
            timeout=INSTALL_TIMEOUT_S,
        )
        stamp.write_text(_wanted())
    return executable


def environment(workdir: Path, tmp: Path) -> dict[str, str]:
    """AIPerf's environment: offline, its temporary files under `tmp`."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    }
    env.update(
        HF_ENDPOINT="http://127.0.0.1:9",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HOME=str(workdir / "hf-home"),
        TMPDIR=str(tmp),
    )
    return env


def run(
    executable: Path,
    *,
    target: str,
    model: str,
    api: str,
    tokenizer_dir: Path,
    schedule_file: Path,
    artifacts: Path,
    workdir: Path,
    timeout_s: float,
) -> Path:
    """Replay `schedule_file` against `target`; returns the per-request JSONL. Raises
    RuntimeError with the end of AIPerf's output when it fails."""
    argv = [
        str(executable),
        "profile",
        *("--model", model, "--url", target.rstrip("/").removesuffix("/v1")),
        *("--endpoint-type", "chat" if api == "chat" else "completions", "--streaming"),
        *("--tokenizer", str(tokenizer_dir)),
        *("--input-file", str(schedule_file), "--custom-dataset-type", "single_turn"),
        "--fixed-schedule",
        # The same body as loadtest's: max_tokens (not max_completion_tokens), ignore_eos.
        *("--extra-inputs", "ignore_eos:true", "--use-legacy-max-tokens"),
        # Token counts from usage, as loadtest reads them.
        "--use-server-token-count",
        *("--ui-type", "none", "--no-server-metrics", "--no-gpu-telemetry"),
        *("--export-level", "records", "--artifact-dir", str(artifacts)),
    ]
    log = workdir / "aiperf.log"
    tmp = Path(tempfile.mkdtemp(prefix="aiperf-", dir="/tmp" if Path("/tmp").is_dir() else None))
    with log.open("wb") as sink:
        # Its own session: AIPerf starts a process per service; on a timeout all of them go.
        proc = subprocess.Popen(
            argv,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=environment(workdir, tmp),
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise RuntimeError(f"aiperf did not finish in {timeout_s:.0f} s (log: {log})") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    records = artifacts / "profile_export.jsonl"
    if code != 0 or not records.is_file():
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"aiperf exited with {code}; its output ends:\n{tail}")
    return records


@dataclass(frozen=True)
class Measured:
    """One tool's samples, in seconds: TTFT, ITL (pooled chunk gaps), TPOT and E2E per
    request, and the prompt tokens the server reported."""

    ttft: np.ndarray
    itl: np.ndarray
    tpot: np.ndarray
    e2e: np.ndarray
    prompt_tokens: np.ndarray
    ok: int
    failed: int


def read_records(path: Path) -> Measured:
    """AIPerf's profile_export.jsonl: milliseconds, one line per request (profiling phase).

    Its `inter_chunk_latency` is loadtest's ITL; its `inter_token_latency` is a per-request
    TPOT, (request_latency - TTFT) / (output tokens - 1)."""
    ttft, itl, tpot, e2e, prompt = [], [], [], [], []
    ok = failed = 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        meta, metrics = row.get("metadata", {}), row.get("metrics", {})
        if meta.get("benchmark_phase", "profiling") != "profiling":
            continue
        if row.get("error") or meta.get("was_cancelled") or "time_to_first_token" not in metrics:
            failed += 1
            continue
        ok += 1
        ttft.append(metrics["time_to_first_token"]["value"])
        itl.extend(metrics.get("inter_chunk_latency", {}).get("value") or [])
        if "inter_token_latency" in metrics:
            tpot.append(metrics["inter_token_latency"]["value"])
        e2e.append(metrics["request_latency"]["value"])
        if "usage_prompt_tokens" in metrics:
            prompt.append(metrics["usage_prompt_tokens"]["value"])

    def seconds(values: list[float]) -> np.ndarray:
        return np.asarray(values, dtype=float) / 1000.0

    return Measured(
        seconds(ttft), seconds(itl), seconds(tpot), seconds(e2e), np.asarray(prompt), ok, failed
    )
