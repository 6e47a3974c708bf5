"""`loadtest study --seeds`: one study per seed, and each strategy's gap to the oracle
across them (mean, worst, worst where the fleet keeps up)."""

import json
import random
from pathlib import Path

import pytest

from loadtest.study.fleet import StudyError, study_fleet
from loadtest.study.run import Study, run_study
from loadtest.study.seeds import Gaps, best_on_average, bests, gaps, parse_seeds
from loadtest.workload.format import load_workload
from tests.loadtest.helpers import TINY_STUDY, loadtest


def test_seeds_are_ranges_or_lists_and_bad_ones_are_named() -> None:
    assert parse_seeds("1-3") == (1, 2, 3)
    assert parse_seeds("7,1, 3-4,3") == (1, 3, 4, 7)
    for bad in ("", "a-b", "1-", "5-1", "1-200"):
        with pytest.raises(StudyError, match="--seeds"):
            parse_seeds(bad)


def test_the_mean_gaps_interval_covers_the_true_mean_95_times_in_100() -> None:
    # Gaps drawn around a known mean, five seeds at a time, 2,000 times.
    rng = random.Random(11)
    covered = 0
    for _ in range(2000):
        drawn = {seed: rng.gauss(0.05, 0.1) for seed in range(1, 6)}
        g = Gaps("s", 0.9, drawn, frozenset())
        assert g.mean is not None and g.half_width is not None
        covered += abs(g.mean - 0.05) <= g.half_width
    assert 0.93 <= covered / 2000 <= 0.97
    assert Gaps("s", 0.9, {1: 0.1, 2: None}, frozenset()).half_width is None


def test_the_best_on_average_has_the_lowest_mean_gap() -> None:
    found = [
        Gaps("a", 0.9, {1: 0.02, 2: 0.30}, frozenset()),  # the better run, the worse mean
        Gaps("b", 0.9, {1: 0.05, 2: 0.07}, frozenset()),
        Gaps("c", 0.5, {1: 0.0, 2: 0.0}, frozenset()),
    ]
    best = best_on_average(found, 0.9)
    assert best is not None and best.strategy == "b"
    assert best_on_average(found, 0.7) is None


def studies(loads: list[float]) -> list[Study]:
    fleet = study_fleet(2, "tiny", "baseline")
    workload = load_workload("chat-mixed")
    return [
        run_study(
            fleet,
            workload,
            ["round_robin", "p2c"],
            loads,
            seed=seed,
            requests=300,
            poll_interval=0.1,
        )
        for seed in (1, 2, 3)
    ]


def test_gaps_across_seeds_are_each_seeds_gap_summed_up() -> None:
    found = studies([0.6, 1.6])
    for g in gaps(found):
        per_seed = []
        for study in found:
            row, oracle = study.row(g.load, g.strategy), study.oracle(g.load)
            assert row is not None
            per_seed.append(row.gap(oracle))
        assert list(g.by_seed.values()) == per_seed and list(g.by_seed) == [1, 2, 3]
        known = [gap for gap in per_seed if gap is not None]
        assert g.mean == pytest.approx(sum(known) / len(known))
        assert g.worst == max(known)
        # Past saturation every seed's oracle rises: nothing is left as sustained.
        assert g.rising == (frozenset({1, 2, 3}) if g.load == 1.6 else frozenset())
        sustained = [gap for seed, gap in g.by_seed.items() if seed not in g.rising]
        assert g.worst_sustained == max((x for x in sustained if x is not None), default=None)
    light, heavy = bests(found)
    assert heavy.worst_sustained is None
    best_gaps = []
    for study in found:
        best = study.best(0.6)
        assert best is not None
        assert light.by_seed[study.seed][0] == best.strategy
        best_gaps.append(best.gap(study.oracle(0.6)))
    assert light.worst_sustained == max(g for g in best_gaps if g is not None)


def test_the_command_runs_each_seed_and_writes_what_holds_across_them(tmp_path: Path) -> None:
    result = loadtest(
        *TINY_STUDY,
        "--seeds",
        "1-2",
        "--out",
        "res",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "== seed 1" in result.stdout and "== seed 2" in result.stdout
    assert "TTFT p99 vs the oracle over seeds 1, 2" in result.stdout
    assert (
        "load 1.60: each run's best shipped strategy, at worst: - where the fleet keeps up; "
        "the oracle still rising on seed(s) 1, 2" in result.stdout
    )
    for seed in (1, 2):
        one = json.loads((tmp_path / "res" / f"seed-{seed}" / "study.json").read_text())
        assert one["seed"] == seed
    document = json.loads((tmp_path / "res" / "seeds.json").read_text())
    assert document["seeds"] == [1, 2]
    p2c = next(s for s in document["strategies"] if s["strategy"] == "p2c" and s["load"] == 0.6)
    per_seed = [
        next(
            r["ttft_p99_gap_to_oracle"]
            for r in json.loads((tmp_path / "res" / f"seed-{seed}" / "study.json").read_text())[
                "rows"
            ]
            if r["strategy"] == "p2c" and r["load"] == 0.6
        )
        for seed in (1, 2)
    ]
    assert p2c["gap_by_seed"] == {"1": per_seed[0], "2": per_seed[1]}
    assert p2c["mean_gap"] == pytest.approx(sum(per_seed) / 2)
    light = [s for s in document["strategies"] if s["load"] == 0.6]
    average = next(b for b in document["best_on_average"] if b["load"] == 0.6)
    assert average["mean_gap"] == min(s["mean_gap"] for s in light)
    assert average["strategy"] in {s["strategy"] for s in light}
    assert f"load 0.60: best shipped strategy on average {average['strategy']}" in result.stdout
    heavy = next(b for b in document["best"] if b["load"] == 1.6)
    assert heavy["oracle_rising_seeds"] == [1, 2] and heavy["worst_gap_sustained"] is None
    bad = loadtest("study", "--seeds", "x", cwd=tmp_path)
    assert bad.returncode == 2 and "--seeds: 'x' is not like 1-5 or 1,3,7" in bad.stdout
