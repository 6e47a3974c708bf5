"""loadtest agrees with a reference tool (AIPerf, a real subprocess) on a simulated replica.

`bench/crosscheck.py` sends one seeded schedule through loadtest and through AIPerf to
`vllm-sim serve` with a realistic profile (Llama 3.1 8B on an H100) played 8 times slower, so
that the server's times (TTFT about 85 ms, one decode step about 56 ms) dwarf what a client
adds. The replica counts prompts with the same small BPE tokenizer the schedule was sized
with. Chosen by measurement, so that the server behaves the same in both runs:

- 64-token prompts keep every engine step memory-bound: a step takes the same time however
  many requests join it (512-token prompts made a 1% mode of double-prefill steps, and ITL
  p99 jumped 0.60-1.41 between runs, from the server alone);
- evenly spaced arrivals sweep the phase of the engine's steps evenly: TTFT is a wait for the
  running step plus one step, and with Poisson arrivals the median of that wait moved by
  +-3.5% from run to run;
- 16 output tokens at 8 requests/s keep about 8 streams open, so AIPerf (six Python
  processes) is not short of CPU on two cores (with 32 tokens its ITL p99 read 5-8 ms higher).

AIPerf is installed once in a cached venv (scripts/test.sh does it before pytest: 1-3
minutes the first time on a 2-core machine, seconds after). Both tools run at niceness -10
when permitted, ahead of other jobs on a shared machine. A hiccup during either run can still
move a p99 by more than the tolerance, so a miss is retried, twice at most, with fresh prompt
text; every attempt is shown when all miss.
"""

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.loadtest.tokenizer_dir import build_tokenizer
from tests.procs import Proc, bin_path

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ("ttft", "itl", "tpot")
TOLERANCE = {50: 0.05, 99: 0.10}
PROMPT_TOKENS = 64
REQUESTS = 100


Figures = dict[str, float]


def crosscheck(target: str, tokenizer: Path, workdir: Path) -> tuple[Figures, Figures, str]:
    out = workdir / "figures.json"
    argv = [
        sys.executable,
        str(ROOT / "bench" / "crosscheck.py"),
        *("--target", target, "--tokenizer", str(tokenizer)),
        *("--requests", str(REQUESTS), "--rate", "8", "--arrival", "constant"),
        *("--prompt-tokens", str(PROMPT_TOKENS), "--output-tokens", "16"),
        *("--workdir", str(workdir), "--json", str(out)),
        *("--nice", "-10"),
    ]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        printed, _ = proc.communicate(timeout=840)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        printed, _ = proc.communicate()
    assert proc.returncode == 0, printed
    figures = json.loads(out.read_text())
    return figures["loadtest"], figures["aiperf"], printed


def misses(ours: Figures, theirs: Figures) -> list[str]:
    return [
        f"{name} p{q}: loadtest {ours[f'{name}_p{q}_s'] * 1000:.2f} ms, AIPerf "
        f"{theirs[f'{name}_p{q}_s'] * 1000:.2f} ms"
        for name in FIGURES
        for q, tolerance in TOLERANCE.items()
        if abs(ours[f"{name}_p{q}_s"] / theirs[f"{name}_p{q}_s"] - 1) > tolerance
    ]


@pytest.mark.timeout(1800)
def test_loadtest_agrees_with_aiperf_on_a_simulated_replica(
    spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    tokenizer = build_tokenizer(tmp_path / "tokenizer")
    sim = spawn(
        [
            bin_path("vllm-sim"),
            *("serve", "--model", "sim/llama-3.1-8b", "--profile", "llama-3.1-8b-h100"),
            *("--time-scale", "8", "--tokenizer", str(tokenizer)),
            *("--port", "{port}", "--log-level", "warning"),
        ]
    )
    shown = []
    for attempt in (1, 2, 3):
        ours, theirs, printed = crosscheck(sim.url, tokenizer, tmp_path / f"attempt-{attempt}")
        shown.append(printed)
        # Every request served, with the prompt length asked for (template included).
        assert (ours["ok"], theirs["ok"]) == (REQUESTS, REQUESTS), printed
        assert ours["prompt_tokens_mean"] == theirs["prompt_tokens_mean"] == PROMPT_TOKENS
        missed = misses(ours, theirs)
        if not missed:
            print(f"attempt {attempt}:\n" + printed)  # the side-by-side table (pytest -s)
            return
    pytest.fail("outside p50 +-5% / p99 +-10%: " + "; ".join(missed) + "\n" + "\n".join(shown))
