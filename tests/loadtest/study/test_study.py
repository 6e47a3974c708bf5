"""`loadtest study`: strategies and the oracle at each load, and the files it writes."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.commands.study import parse_loads
from loadtest.study.fleet import ORACLE, StudyError, strategy_specs, study_fleet
from loadtest.study.report import write_study
from loadtest.study.run import run_study
from loadtest.workload.format import load_workload
from tests.loadtest.helpers import TINY_STUDY, loadtest


def test_a_small_study_has_every_strategy_and_the_oracle_at_every_load(tmp_path: Path) -> None:
    fleet = study_fleet(3, "tiny", "baseline")
    said: list[str] = []
    study = run_study(
        fleet,
        load_workload("mixed-lengths"),
        ["round_robin", "least_work"],
        [0.5, 0.9],
        seed=3,
        requests=300,
        poll_interval=0.1,
        announce=said.append,
    )
    assert study.workload.models == (("sim/tiny", 1.0),)  # copies serve the profile's model
    assert study.capacity.rate > 0 and "measured on 2 copies" in said[0]
    assert [(r.load, r.strategy) for r in study.rows] == [
        (load, name) for load in (0.5, 0.9) for name in (ORACLE, "round_robin", "least_work")
    ]
    low, high = (study.row(load, "round_robin") for load in (0.5, 0.9))
    assert low is not None and high is not None
    assert high.rate == pytest.approx(0.9 / 0.5 * low.rate)
    for row in study.rows:
        assert row.requests == 300 and row.figures["ttft_p99_s"] is not None
    for load in study.loads:
        # The same arrivals at a load: only prompts too long for the model fail, everywhere.
        assert len({r.figures["error_rate"] for r in study.rows if r.load == load}) == 1
    oracle = study.oracle(0.9)
    assert oracle is not None and oracle.gap(oracle) == 0.0
    assert study.best(0.9) in (study.row(0.9, "round_robin"), study.row(0.9, "least_work"))

    report = write_study(study, tmp_path / "out")
    document = json.loads((tmp_path / "out" / "study.json").read_text())
    assert document["replicas"] == 3 and len(document["rows"]) == 6
    rr = next(r for r in document["rows"] if r["strategy"] == "round_robin" and r["load"] == 0.9)
    assert rr["ttft_p99_gap_to_oracle"] == pytest.approx(
        rr["ttft_p99_s"] / oracle.figures["ttft_p99_s"] - 1
    )
    with (tmp_path / "out" / "study.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 6
    page = report.read_text()
    assert "<svg" in page and "Load 0.90" in page and "least_work" in page


def test_a_load_the_fleet_does_not_keep_up_with_is_called_so(tmp_path: Path) -> None:
    study = run_study(
        study_fleet(3, "tiny", "baseline"),
        load_workload("mixed-lengths"),
        ["round_robin"],
        [0.5, 1.5],
        seed=3,
        requests=500,
        poll_interval=0.1,
        announce=lambda _: None,
    )
    steady, over = study.oracle(0.5), study.oracle(1.5)
    assert steady is not None and steady.ttft_rise is not None
    assert over is not None and over.ttft_rise is not None
    assert steady.ttft_rise.ratio < 1.2 and over.ttft_rise.ratio > 2
    assert not study.rising(0.5) and study.rising(1.5)
    page = write_study(study, tmp_path).read_text()
    assert page.count('class="warn"') == 1
    assert page.index('class="warn"') > page.index("Load 1.50")
    rows = json.loads((tmp_path / "study.json").read_text())["rows"]
    assert [r["ttft_rising"] for r in rows] == [False, False, True, True]
    assert rows[2]["ttft_rise"] == over.ttft_rise.ratio


def test_bad_options_are_named() -> None:
    with pytest.raises(StudyError, match="--replicas: 1 is out of range; allowed: 2 to 500"):
        study_fleet(1, "tiny", "baseline")
    with pytest.raises(StudyError, match="--profile"):
        study_fleet(4, "no-such-profile", "baseline")
    with pytest.raises(StudyError, match="--fleet: unknown fleet 'nope'"):
        study_fleet(None, "tiny", "nope")
    with pytest.raises(StudyError, match="--strategies: 'fastest'"):
        strategy_specs("round_robin,fastest")
    with pytest.raises(StudyError, match="has no option"):
        strategy_specs("lmetric:speed=9")
    with pytest.raises(StudyError, match="--loads"):
        parse_loads("0.5,0")
    assert strategy_specs("round_robin, lmetric:pending_prefill=true;sample=8,round_robin") == (
        "round_robin",
        "lmetric:pending_prefill=true;sample=8",
    )
    assert parse_loads("0.95,0.5") == (0.5, 0.95)


def test_the_command_prints_the_tables_and_writes_the_report(tmp_path: Path) -> None:
    result = loadtest(
        *TINY_STUDY,
        "--out",
        "res",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "saturates at" in result.stdout
    assert "vs oracle" in result.stdout and "load 0.60: best shipped strategy" in result.stdout
    assert "load 1.60: TTFT was still rising" in result.stdout
    assert "load 0.60: TTFT was still rising" not in result.stdout
    assert (tmp_path / "res" / "report.html").exists()
    bad = loadtest("study", "--replicas", "501", cwd=tmp_path)
    assert bad.returncode == 2
    assert "--replicas: 501 is out of range" in bad.stdout


_STUDY_IN_A_PROCESS = """
import json
from loadtest.study.fleet import study_fleet
from loadtest.study.run import run_study
from loadtest.workload.format import load_workload
study = run_study(study_fleet(80, "tiny", "baseline"), load_workload("chat-mixed"),
                  ["lmetric", "prefix_least_work"], [0.85], seed=1, requests=1500,
                  poll_interval=0.1, announce=lambda line: None)
print(json.dumps([(r.strategy, r.figures["ttft_p99_s"], r.figures["ttft_p50_s"])
                  for r in study.rows]))
"""


def test_a_study_gives_the_same_answer_whatever_the_string_hashing() -> None:
    # With more candidates than a strategy scores, lmetric and prefix_least_work add the
    # replicas holding the prompt's prefix in the order the index lists them; a set of
    # replica ids listed them in an order that changed with PYTHONHASHSEED.
    answers = []
    for seed in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-c", _STUDY_IN_A_PROCESS],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        answers.append(json.loads(done.stdout))
    assert len(answers[0]) == 3 and answers[0] == answers[1]
