"""Warnings about a run's own trustworthiness: prompt lengths and read delay."""

from dataclasses import replace

from loadtest.analysis.checks import prompt_length_warnings, prompt_lengths, read_delay_line
from loadtest.drive.records import RequestRecord
from loadtest.drive.runner import LagStats

BASE = RequestRecord(
    index=0, model="m", scheduled_s=0.0, sent_s=0.0, lag_s=0.0, status=200, prompt_tokens=100
)


def test_prompt_lengths_are_compared_per_model_beyond_five_percent() -> None:
    records = [
        replace(BASE, model="exact", requested_prompt_tokens=100),
        replace(BASE, model="close", requested_prompt_tokens=96),  # served +4.2%
        replace(BASE, model="off", requested_prompt_tokens=40),  # served 2.5x
        replace(BASE, model="off", requested_prompt_tokens=40, error_kind="timeout"),
    ]
    assert prompt_lengths(records) == {
        "close": (1, 96, 100),
        "exact": (1, 100, 100),
        "off": (1, 40, 100),
    }
    (line,) = prompt_length_warnings(records, tokenizer_given=False)
    assert line.startswith("off: the server counted 100 prompt tokens where 40 were asked for")
    assert "+150.0%" in line and "--tokenizer" in line
    (given,) = prompt_length_warnings(records, tokenizer_given=True, label="A: ")
    assert given.startswith("A: off:") and "not the served model's" in given


def test_read_delay_within_and_over_the_budget() -> None:
    within, line = read_delay_line(LagStats(0.0002, 0.0031, 0.01))
    assert within and "p99 3.10 ms" in line and "under the 5 ms budget" in line
    within, line = read_delay_line(LagStats(0.001, 0.012, 0.05))
    assert not within and "p99 12.0 ms exceeds 5 ms" in line
