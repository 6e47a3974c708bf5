import re

import numpy as np

from loadtest.analysis.report import ReportSide, render_run
from loadtest.drive.records import RequestRecord
from loadtest.environments.sampler import ReplicaSample


def records(shift: float, n: int = 120) -> list[RequestRecord]:
    rng = np.random.default_rng(int(shift * 100))
    out = []
    for i in range(n):
        ttft = float(rng.exponential(0.1) + shift)
        gaps = tuple(float(g) for g in rng.exponential(0.01, size=20))
        out.append(
            RequestRecord(
                index=i,
                model="m",
                scheduled_s=i * 0.1,
                sent_s=i * 0.1,
                lag_s=0.0001,
                status=200,
                ttft_s=ttft,
                itl_s=gaps,
                tpot_s=sum(gaps) / 20,
                e2e_s=ttft + sum(gaps),
                prompt_tokens=50,
                output_tokens=21,
                replica=f"r{i % 3}",
            )
        )
    out.append(
        RequestRecord(
            index=n,
            model="m",
            scheduled_s=n * 0.1,
            sent_s=n * 0.1,
            lag_s=0.0,
            status=500,
            error_kind="http_5xx",
            error="boom",
        )
    )
    return out


def samples(start: float) -> list[ReplicaSample]:
    return [
        ReplicaSample(start + t * 0.5, f"r{r}", float(t % 4), 2.0, 0.1 * r, 1, True)
        for t in range(20)
        for r in range(3)
    ]


def side(label: str, shift: float) -> ReportSide:
    return ReportSide(
        label=label,
        records=records(shift),
        figures={"throughput_rps": 9.5, "ttft_p99_s": 0.42},
        samples=samples(1000.0),
        started_at=1000.0,
        warmup=frozenset({0, 1}),
    )


def sections(html: str) -> dict[str, str]:
    """Each <h2> heading and the markup up to the next one."""
    parts = re.split(r"<h2>(.*?)</h2>", html)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_run_report_is_one_file_with_every_plot() -> None:
    html = render_run(side("solo", 0.1), title="chat-mixed on x", notes=["time scale 10"])
    found = sections(html)
    for title in (
        "Latency CDFs",
        "TTFT over time",
        "Requests per replica",
        "Replica queue and KV usage over time",
    ):
        assert "<svg" in found[title], title
    assert "time scale 10" in html
    assert "ttft_p99_s" in html and "420.0 ms" in html
    # Self-contained: no external scripts, styles or images.
    assert not re.search(r"(src|href)=[\"']https?:", html)


def test_report_without_samples_says_so() -> None:
    lonely = side("x", 0.1)
    lonely.samples = []
    html = render_run(lonely, title="t")
    assert "No replica samples" in html


def test_write_run_report_for_a_loadtest_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from loadtest.analysis.report import write_run_report
    from loadtest.analysis.summary import summarize
    from loadtest.drive.runner import LagStats, RunResult
    from loadtest.workload import load_workload
    from loadtest.workload.schedule import build_schedule

    workload = load_workload("chat-mixed")
    recs = records(0.1)
    result = RunResult(
        target_url="http://127.0.0.1:1",
        schedule=build_schedule(workload, requests=len(recs)),
        records=recs,
        started_at=datetime.fromtimestamp(1000.0, UTC),
        duration_s=13.0,
        lag=LagStats(0.0001, 0.0002, 0.0003),
        closed_loop=False,
        read_delay=LagStats(0.00004, 0.0071, 0.009),
    )
    path = write_run_report(tmp_path, result, summarize(recs, workload), workload, samples(1000.0))
    html = path.read_text()
    assert path == tmp_path / "report.html"
    assert html.count("<svg") == 4
    assert "p99 0.20 ms" in html and "chat-mixed on http://127.0.0.1:1" in html
    # The read side, and what prompts were sized with, are in the notes too.
    assert "read delay p99 7.1 ms exceeds 5 ms" in html
    assert "prompts sized with the simulator&#x27;s approximate tokenizer" in html
    # A rate is not a time: tokens per second are shown as they are, not in ms.
    per_s = re.search(r"<td>output_tokens_per_s</td><td>([^<]*)</td>", html)
    assert per_s is not None and "ms" not in per_s.group(1)


def test_a_run_without_chunk_gaps_says_so_in_the_itl_panel() -> None:
    from dataclasses import replace

    gapless = side("virtual", 0.1)
    gapless.records = [replace(r, itl_s=()) for r in gapless.records]
    html = render_run(gapless, title="t")
    assert "not recorded in this run" in html
    assert "not recorded in this run" not in render_run(side("live", 0.1), title="t")
