from dataclasses import replace

import pytest

from loadtest.compare.judge import Runs, judge, schedule_window
from loadtest.compare.live import judged_workload
from loadtest.compare.options import Sweep
from loadtest.drive.records import RequestRecord
from loadtest.environments.catalog import Environment
from loadtest.workload import Slo, load_workload


def record(i: int) -> RequestRecord:
    return RequestRecord(i, "m", i * 0.1, i * 0.1, 0.0, 200, ttft_s=0.1, itl_s=(0.01,))


def env(scale: float | None, url: str | None = None) -> Environment:
    if url:
        return Environment("u", url=url)
    return Environment("e", fleet="baseline", time_scale=scale)


def test_slo_targets_scale_with_a_common_time_scale() -> None:
    workload = replace(load_workload("chat-mixed"), slo=Slo(ttft_s=1.0, tpot_s=0.1))
    scaled = judged_workload(workload, env(10), env(10))
    assert scaled.slo == Slo(ttft_s=pytest.approx(10.0), tpot_s=pytest.approx(1.0))
    assert judged_workload(workload, env(10), env(5)).slo == workload.slo
    assert judged_workload(workload, env(None, "http://x"), env(None, "http://y")) is workload


def test_rates_share_the_schedule_span() -> None:
    measured = [record(i) for i in range(11)]  # scheduled 0.0 .. 1.0 s
    assert schedule_window(measured, 35.0) == pytest.approx(1.0)
    closed = [replace(r, scheduled_s=0.0) for r in measured]
    assert schedule_window(closed, 35.0) == pytest.approx(35.0)


def test_sweeps_parse_and_refuse_what_makes_no_sense() -> None:
    assert Sweep.parse("0.3:0.95:8").loads()[:3] == [0.3, 0.3929, 0.4857]
    assert Sweep.parse("0.5:0.9:2").loads() == [0.5, 0.9]
    for bad in ("0.3:0.95", "a:b:c", "0.9:0.3:4", "0.3:0.9:1", "0:0.5:3"):
        with pytest.raises(ValueError, match="--sweep"):
            Sweep.parse(bad)


def test_a_late_send_or_read_in_any_run_is_a_caution() -> None:
    workload = load_workload("chat-mixed")
    runs = [[record(i) for i in range(40)]]

    def judged(read_a: float, lag_b: float) -> list[str]:
        a = Runs("a", runs, lag_p99_s=[0.001], read_delay_p99_s=[read_a])
        b = Runs("b", runs, lag_p99_s=[lag_b], read_delay_p99_s=[0.0])
        found = judge(a, b, workload, window_s=4.0, resamples=50, seed=0, min_effect=0.05)
        return list(found.verdict.cautions)

    assert judged(0.002, 0.002) == []
    (late_read,) = judged(0.012, 0.002)
    assert "1 of 2 runs (a run 1: p99 12.0-12.0 ms" in late_read
    (both,) = judged(0.012, 0.030)
    assert "2 of 2 runs (a run 1, b run 1: p99 12.0-30.0 ms" in both
