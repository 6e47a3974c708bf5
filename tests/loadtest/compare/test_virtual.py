"""`loadtest compare` in virtual time, in process: sweeps, single loads, A/A calibration,
determinism, and the report."""

import re
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from loadtest.compare.options import CompareOptions, Sweep
from loadtest.compare.session import compare
from loadtest.compare.virtual import at_load, capacities
from loadtest.environments.catalog import EnvironmentsError, load_environments, resolve
from loadtest.playback.capacity import capacity
from loadtest.playback.fleets import virtual_fleet
from loadtest.workload import load_workload

WORKLOAD = """\
models: {sim/tiny: 1.0}
prompt_tokens: {dist: lognormal, median: 300, spread: 0.6, min: 16, max: 1500}
output_tokens: {dist: lognormal, median: 60, spread: 0.6, min: 4, max: 400}
arrival: {process: poisson, rate: 10}
requests: 200
seed: 3
slo: {ttft: 0.5, tpot: 0.05}
"""
TINY = "{model: sim/tiny, profile: tiny, args: [--max-num-seqs, '16']}"
ENVIRONMENTS = f"""\
environments:
  tiny-rr: {{strategy: round_robin, replicas: [{TINY}, {TINY}, {TINY}]}}
  tiny-qd: {{strategy: queue_depth, replicas: [{TINY}, {TINY}, {TINY}]}}
  tiny-one: {{strategy: round_robin, replicas: [{TINY}]}}
  tiny-url: {{url: "http://127.0.0.1:9"}}
"""


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "w.yaml").write_text(WORKLOAD)
    (tmp_path / "envs.yaml").write_text(ENVIRONMENTS)
    return tmp_path / "w.yaml", tmp_path / "envs.yaml"


def options(files: tuple[Path, Path], out: Path, **changes: object) -> CompareOptions:
    workload, envs = files
    base = CompareOptions(
        workload=str(workload),
        mode="virtual",
        environments_file=envs,
        out=out,
        resamples=100,
        virtual_requests=600,
    )
    return CompareOptions(**{**base.__dict__, **changes})  # type: ignore[arg-type]


def test_a_sweep_finds_saturation_curves_and_writes_the_report(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    result = compare("tiny-rr", "tiny-qd", options(files, tmp_path / "r", sweep=Sweep(0.4, 0.9, 3)))
    assert result.capacity is not None
    cap_a, cap_b = result.capacity
    assert cap_a.rate > 0 and cap_b.rate > 0 and cap_a.bottleneck == "sim/tiny"
    assert [p.load for p in result.sweep] == [0.4, 0.65, 0.9]
    rates = [p.rate for p in result.sweep]
    assert rates == sorted(rates) and rates[-1] == pytest.approx(0.9 * cap_a.rate, rel=0.15)
    # Latency grows with load on both sides.
    p99 = [p.judged.by_name("ttft_p99_s") for p in result.sweep]
    assert p99[0].a < p99[-1].a and p99[0].b < p99[-1].b
    assert result.verdict.startswith("over loads 0.40-0.90 of tiny-rr's saturation rate")
    document = orjson.loads((result.directory / "compare.json").read_bytes())
    assert len(document["sweep"]) == 3 and document["capacity"]["a"]["rate"] == cap_a.rate
    assert "live" not in document
    html = (result.directory / "report.html").read_text()
    assert "Over load, in virtual time" in html and html.count("<svg") == 1
    assert "TTFT p99" in html and "Live check" not in html


def test_a_side_past_what_it_sustains_is_named_where_its_ttft_keeps_rising(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    # One replica against three: at 0.9 of the three's saturation rate the one gets nearly
    # three times what it sustains and its queue grows to the end; at 0.2 it keeps up.
    sweep = Sweep(0.2, 0.9, 2)
    result = compare("tiny-rr", "tiny-one", options(files, tmp_path / "r", sweep=sweep))
    light, heavy = result.sweep
    assert light.rise_b is not None and not light.rise_b.rising
    assert heavy.rise_b is not None and heavy.rise_b.rising and heavy.rise_b.ratio > 1.5
    assert "b" in [side for side, _ in heavy.rising()]
    assert any("B (tiny-one): TTFT still rising" in n for n in heavy.judged.observations)
    assert not any("still rising" in n for n in light.judged.observations)
    assert result.capacity is not None
    share = result.capacity[1].rate / result.capacity[0].rate
    assert 0.2 < share < 0.5  # one replica of three
    assert (
        f"tiny-one: TTFT still rising at load 0.90 (past what it sustains: it saturates at "
        f"{share:.2f} of tiny-rr's rate" in result.verdict
    )
    assert "tiny-one: TTFT still rising at load 0.20" not in result.verdict
    document = orjson.loads((result.directory / "compare.json").read_bytes())
    rises = [point["ttft_rise"]["b"] for point in document["sweep"]]
    assert [rise["rising"] for rise in rises] == [False, True]
    assert rises[1]["model"] == "sim/tiny" and rises[1]["ratio"] > 1.5
    html = (result.directory / "report.html").read_text()
    assert "<p class='warn'>tiny-one: TTFT still rising at load 0.90" in html


def test_same_seed_same_answer_byte_for_byte(files: tuple[Path, Path], tmp_path: Path) -> None:
    def sweep_part(out: Path) -> bytes:
        result = compare("tiny-rr", "tiny-qd", options(files, out, sweep=Sweep(0.5, 0.8, 2)))
        document = orjson.loads((result.directory / "compare.json").read_bytes())
        return orjson.dumps([document["sweep"], document["capacity"], document["verdict"]])

    assert sweep_part(tmp_path / "one") == sweep_part(tmp_path / "two")


def test_a_single_load_in_virtual_time(files: tuple[Path, Path], tmp_path: Path) -> None:
    result = compare("tiny-rr", "tiny-qd", options(files, tmp_path / "r", load=0.7))
    assert result.point is not None and not result.sweep
    assert result.point.load == 0.7
    assert len(result.point.schedule.requests) == 600  # --virtual-requests
    assert re.match(r"at load 0\.70 \(virtual time\): ", result.verdict)
    html = (result.directory / "report.html").read_text()
    assert "At load 0.70" in html and "Latency CDFs" in html


def test_url_environments_refuse_virtual_time(files: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(EnvironmentsError, match=r"tiny-url.*runs only live"):
        compare("tiny-rr", "tiny-url", options(files, tmp_path / "r"))


def test_aa_in_virtual_time_rarely_names_a_winner(files: tuple[Path, Path]) -> None:
    """The same fleet on both sides; the sides differ only by chance (queue_depth's ties,
    seeded apart): over 20 schedules a winner is named at most twice."""
    workload = load_workload(files[0])
    envs = load_environments(files[1])
    fleet = virtual_fleet(resolve(envs, "tiny-qd"))
    fleets = (fleet, fleet)
    unit, _ = capacities(fleets, workload, seed=1)
    opts = CompareOptions(resamples=100, virtual_requests=500)
    named = 0
    for seed in range(20):
        point = at_load(fleets, workload, unit, 0.8, opts, seed=seed)
        named += point.judged.verdict.better is not None
    assert named <= 2


def test_a_phased_mix_saturates_in_its_busiest_phase(tmp_path: Path) -> None:
    (tmp_path / "envs.yaml").write_text(
        "environments:\n  two: {replicas: [{model: a, profile: tiny}, {model: b, profile: tiny}]}\n"
    )
    phased = tmp_path / "w.yaml"
    phased.write_text(
        "phases:\n"
        "  - {duration: 5, models: {a: 0.9, b: 0.1}}\n"
        "  - {duration: 5, models: {a: 0.1, b: 0.9}}\n"
        "prompt_tokens: 200\noutput_tokens: 40\narrival: {process: poisson, rate: 10}\n"
        "requests: 200\n"
    )
    fleet = virtual_fleet(resolve(load_environments(tmp_path / "envs.yaml"), "two"))
    workload = load_workload(phased)
    assert dict(workload.models) == {"a": 0.5, "b": 0.5}
    cap = capacity(fleet, workload, seed=1)
    # Each model gets 90% of the traffic in its busy phase: that share is what saturates.
    assert cap.rate == pytest.approx(min(rate / 0.9 for rate in cap.per_model.values()))
    flat = capacity(fleet, replace(workload, phases=()), seed=1)
    assert flat.per_model == cap.per_model
    assert flat.rate == pytest.approx(cap.rate * 0.9 / 0.5)


def test_a_closed_loop_in_virtual_time_for_loadtest_cost(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    result = compare(
        "tiny-rr", "tiny-qd", options(files, tmp_path / "r", concurrency=6, requests=120)
    )
    point = result.point
    assert point is not None and not result.sweep and point.schedule.concurrency == 6
    assert len(point.a.records) == len(point.b.records) == 120
    # Its rate is what A sustained with six in flight, and its load that over A's saturation.
    assert result.capacity is not None
    assert point.load == pytest.approx(point.rate / result.capacity[0].rate)
    assert re.match(r"at concurrency 6, load \d\.\d\d \(virtual time\): ", result.verdict)
    document = orjson.loads((result.directory / "compare.json").read_bytes())
    assert document["virtual"]["concurrency"] == 6
    assert document["a"]["figures_from"].startswith("virtual time, concurrency 6")
    assert document["a"]["figures"]["output_tokens_per_s"] > 0
    html = (result.directory / "report.html").read_text()
    assert "At concurrency 6, load" in html


def test_a_closed_loop_divides_each_sides_rates_by_its_own_window(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    """Two users on three fast replicas against two users on one slow replica: same requests,
    each side at its own pace, so B's throughput is lower, not equal to A's."""
    slow = "{model: sim/tiny, profile: tiny, args: [--max-num-seqs, '1']}"
    envs = files[1]
    envs.write_text(ENVIRONMENTS + f"  tiny-slow: {{strategy: round_robin, replicas: [{slow}]}}\n")
    result = compare(
        "tiny-rr", "tiny-slow", options(files, tmp_path / "r", concurrency=2, requests=80)
    )
    assert result.point is not None
    throughput = result.point.judged.by_name("throughput_rps")
    assert throughput.b < 0.8 * throughput.a and throughput.winner == "a"
