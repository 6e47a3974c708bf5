"""`loadtest run` sizing prompts for the target: --tokenizer, the warnings when lengths are
off, and a workload whose length comes from the command line."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from loadtest.analysis.results import read_records
from tests.loadtest.helpers import loadtest
from tests.loadtest.sim.serving import serve_argv
from tests.loadtest.tokenizer_dir import build_tokenizer
from tests.procs import Proc

WORKLOAD = {  # no duration and no requests: the command line says how many
    "models": ["sim-tiny"],
    "prompt_tokens": {"dist": "uniform", "min": 40, "max": 160},
    "output_tokens": 4,
    "arrival": {"process": "poisson", "rate": 40},
}


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tokenizer(tmp_path_factory.mktemp("tok") / "tiny-bpe")


def workload_file(tmp_path: Path) -> Path:
    path = tmp_path / "open.yaml"
    path.write_text(yaml.safe_dump(WORKLOAD))
    return path


def run(target: str, tmp_path: Path, *extra: str) -> tuple[str, Path | None]:
    result = loadtest(
        "run",
        *("--target", target, "--workload", str(workload_file(tmp_path))),
        *("--out", str(tmp_path / "out"), "--no-progress", *extra),
        cwd=tmp_path,
    )
    runs = sorted((tmp_path / "out").glob("open-*")) if (tmp_path / "out").is_dir() else []
    assert result.returncode in (0, 2), result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout, runs[-1] if runs else None


def test_served_prompt_tokens_match_with_the_tokenizer(
    spawn: Callable[..., Proc], tmp_path: Path, tok_dir: Path
) -> None:
    """Replica and generator count with one real tokenizer: served == asked, request by
    request, chat template included; and no prompt-length warning."""
    sim = spawn(serve_argv("--tokenizer", str(tok_dir)))
    out, run_dir = run(sim.url, tmp_path, "--requests", "12", "--tokenizer", str(tok_dir))
    assert run_dir is not None, out
    records = read_records(run_dir)
    assert len(records) == 12 and all(r.ok for r in records)
    assert all(r.prompt_tokens == r.requested_prompt_tokens for r in records)
    assert len({r.prompt_tokens for r in records}) > 3  # the lengths do vary
    assert f"prompts sized with tokenizer {tok_dir}" in out.replace("\n", "")
    # No prompt-length warning; the generator's own timing warnings (lag, read delay) are
    # the loaded machine's, not the tokenizer's.
    warnings = [part.lstrip() for part in out.split("warning:")[1:]]
    assert all(w.startswith("generator") for w in warnings), out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["figures"]["prompt_tokens_served_ratio"] == 1.0
    assert summary["tokenizers"] == f"tokenizer {tok_dir}"


def test_lengths_that_do_not_reach_the_server_are_warned_about(
    spawn: Callable[..., Proc], tmp_path: Path, tok_dir: Path
) -> None:
    """Prompts sized for the BPE tokenizer, counted by the approximate one: > 5% apart."""
    sim = spawn(serve_argv())
    out, run_dir = run(sim.url, tmp_path, "--requests", "8", "--tokenizer", str(tok_dir))
    assert run_dir is not None, out
    flat = " ".join(out.split())
    assert "warning: sim-tiny: the server counted" in flat
    assert "the tokenizer given is not the served model's" in flat


def test_no_tokenizer_against_a_target_that_is_not_vllm_sim_warns_once(
    fake_openai: Callable[..., Proc], tmp_path: Path
) -> None:
    server = fake_openai(ttft=0.01, gap=0.001, blank_every=3)
    out, run_dir = run(server.url, tmp_path, "--requests", "6")
    assert run_dir is not None, out
    flat = " ".join(out.split())
    assert flat.count("no --tokenizer and") == 1
    assert "is not vllm-sim" in flat
    # The fake server sends every third token chunk without text: the visible-text rows.
    assert "TTFT (visible text)" in out and "ITL (visible text)" in out
    records = read_records(run_dir)
    assert all(r.blank_chunks for r in records)
    assert all(len(r.itl_s) == 3 for r in records)  # 4 token chunks each, blank ones too


def test_a_workload_without_a_length_needs_one_on_the_command_line(tmp_path: Path) -> None:
    out, run_dir = run("http://127.0.0.1:1", tmp_path)
    assert run_dir is None
    assert "give duration (seconds) or requests (a count)" in out
    assert "--requests" in out


def test_a_missing_tokenizer_stops_before_sending(tmp_path: Path) -> None:
    missing = str(tmp_path / "nothing-here")
    out, run_dir = run("http://127.0.0.1:1", tmp_path, "--requests", "3", "--tokenizer", missing)
    assert run_dir is None
    assert "error: tokenizer" in out and "no such directory" in out
