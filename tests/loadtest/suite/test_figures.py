"""A point's paces: offered, served (first tokens) and done, in hardware time."""

from loadtest.drive.records import RequestRecord
from loadtest.suite.figures import point_figures
from loadtest.workload.format import parse_workload

WORKLOAD = parse_workload(
    {
        "models": ["m"],
        "prompt_tokens": 8,
        "output_tokens": 8,
        "requests": 100,
        "arrival": {"process": "constant", "rate": 10},
    },
    default_name="w",
    source="test",
)


def record(index: int, sent: float, ttft: float, e2e: float) -> RequestRecord:
    return RequestRecord(
        index, "m", sent, sent, 0.0, 200, ttft_s=ttft, e2e_s=e2e, output_tokens=8, tpot_s=0.01
    )


def test_a_server_that_keeps_up_serves_as_fast_as_offered_whatever_the_answer_lengths() -> None:
    # 10 req/s for 10 s; every first token 20 ms after its send; answers from 0.1 s to 8 s.
    records = [record(i, i / 10, 0.02, 0.1 if i % 2 else 8.0) for i in range(100)]
    _, figures = point_figures(records, WORKLOAD, scale=1.0, closed_loop=False)
    assert abs(figures["offered_rps"] - 10) < 0.01
    assert abs(figures["served_ratio"] - 1) < 0.01
    # Completions are spread by the answers' lengths: their pace says nothing here.
    assert figures["completion_rps"] < 9


def test_past_the_knee_requests_are_served_at_the_servers_pace() -> None:
    # Offered 10 req/s; the server takes one on every 0.2 s (5 req/s), so each waits longer.
    records = [
        record(i, i / 10, i * 0.2 - i / 10 + 0.02, i * 0.2 - i / 10 + 0.1) for i in range(100)
    ]
    _, figures = point_figures(records, WORKLOAD, scale=1.0, closed_loop=False)
    assert abs(figures["served_rps"] - 5) < 0.01
    assert abs(figures["served_ratio"] - 0.5) < 0.01


def test_a_slower_fleet_reports_hardware_rates_and_latencies() -> None:
    records = [record(i, i / 10, 0.02, 0.1) for i in range(100)]
    _, figures = point_figures(records, WORKLOAD, scale=4.0, closed_loop=False)
    assert abs(figures["offered_rps"] - 40) < 0.05 and abs(figures["served_ratio"] - 1) < 0.01
    assert abs(figures["ttft_p50_s"] - 0.005) < 1e-9
    assert figures["lag_p99_s"] == 0.0 and figures["time_scale"] == 4.0
    _, closed = point_figures(records, WORKLOAD, scale=1.0, closed_loop=True)
    assert closed["offered_rps"] is None and closed["served_ratio"] is None
