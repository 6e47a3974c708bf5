"""The suite format: what a point sets, the time scale, the classic testbench file read as it
is (server properties kept as metadata), built-ins, and errors that name the field."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from loadtest.suite.model import SuiteError
from loadtest.suite.spec import builtin_suites, load_suite
from loadtest.sweep.points import Point

WORKLOAD = {
    "models": ["m"],
    "prompt_tokens": {"dist": "uniform", "min": 10, "max": 20},
    "output_tokens": 8,
    "arrival": {"process": "poisson", "rate": 4},
    "duration": 10,
    "seed": 3,
    "warmup": {"seconds": 1},
    "slo": {"ttft": 0.5, "tpot": 0.05},
}


def write(tmp_path: Path, data: dict[str, Any], name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def suite_of(tmp_path: Path, **fields: Any) -> dict[str, Any]:
    return {"targets": ["http://127.0.0.1:9"], "workload": WORKLOAD, **fields}


def test_a_point_sets_workload_fields_and_schedule_overrides(tmp_path: Path) -> None:
    suite = load_suite(
        write(
            tmp_path,
            suite_of(
                tmp_path,
                sweep={"shared_prefix": [{"fraction": 0.5, "tokens": 32}], "rate": [2, 8]},
            ),
        )
    )
    points = suite.points()
    assert [p.label() for p in points] == [
        'shared_prefix={"fraction":0.5,"tokens":32}, rate=2',
        'shared_prefix={"fraction":0.5,"tokens":32}, rate=8',
    ]
    at = suite.workload_at(points[1])
    assert at.workload.shared_prefix is not None and at.workload.shared_prefix.tokens == 32
    schedule = at.schedule()
    assert schedule.arrival.rate == 8 and schedule.arrival.process == "poisson"
    # The same seed: overriding the rate changes the send times and nothing else.
    other = suite.workload_at(points[0]).schedule()
    assert [r.prompt_tokens for r in schedule.requests[:20]] == [
        r.prompt_tokens for r in other.requests[:20]
    ]


def test_nested_fields_and_classic_twins_are_replaced_by_a_point(tmp_path: Path) -> None:
    classic = {**WORKLOAD, "completion_tokens": 5}
    del classic["output_tokens"]
    suite = load_suite(
        write(
            tmp_path,
            {
                "targets": ["http://127.0.0.1:9"],
                "workload": classic,
                "sweep": {"output_tokens": [16], "prompt_tokens.max": [40]},
                "combine": "zip",
            },
        )
    )
    workload = suite.workload_at(suite.points()[0]).workload
    assert workload.output_tokens.value == 16
    assert (workload.prompt_tokens.low, workload.prompt_tokens.high) == (10, 40)


def test_context_length_leaves_room_for_the_longest_output(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, suite_of(tmp_path, sweep={"context_length": [100, 1000]})))
    prompts = [suite.workload_at(p).workload.prompt_tokens for p in suite.points()]
    assert [(d.kind, d.value) for d in prompts] == [("fixed", 92), ("fixed", 992)]
    with pytest.raises(SuiteError, match=r"context_length 8 leaves no room .* above 8"):
        load_suite(write(tmp_path, suite_of(tmp_path, sweep={"context_length": [8]})))


def test_a_slower_fleet_gets_a_slower_schedule_and_looser_targets(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, suite_of(tmp_path, sweep={"rate": [5]})))
    at = suite.workload_at(suite.points()[0])
    real, slow = at.schedule(1.0), at.schedule(4.0)
    assert slow.arrival.rate == pytest.approx(5 / 4)
    assert len(slow.requests) == len(real.requests)
    assert [r.at_s for r in slow.requests] == pytest.approx([r.at_s * 4 for r in real.requests])
    judged = at.judged(4.0)
    assert (judged.slo.ttft_s, judged.slo.tpot_s, judged.warmup.seconds) == (2.0, 0.2, 4.0)


def test_a_range_axis_and_a_concurrency_search(tmp_path: Path) -> None:
    suite = load_suite(
        write(
            tmp_path,
            suite_of(
                tmp_path,
                sweep={"prompt_tokens": {"from": 100, "to": 400, "points": 4}},
                search={"field": "concurrency", "max": 64, "meets": {"ttft_p99": 1.0}},
            ),
        )
    )
    assert [p.label() for p in suite.points()] == [
        "prompt_tokens=100",
        "prompt_tokens=200",
        "prompt_tokens=300",
        "prompt_tokens=400",
    ]
    assert suite.search is not None and suite.search.integer and suite.search.limit == 64
    first = suite.plan().next([])
    assert first is not None and first.label() == "prompt_tokens=100, concurrency=1"
    assert suite.workload_at(first).closed_loop


TESTBENCH = {
    "benchmark": {
        "name": "llama-context",
        "description": "context sweep",
        "target": "http://127.0.0.1:9",
        "owner": "platform",
    },
    "model": {
        "name": "meta-llama/Llama-3.1-8B-Instruct",
        "quantization": "fp8",
        "tensor_parallel_size": 2,
    },
    "context_lengths": [1024, 4096],
    "requests": {
        "num_requests": 20,
        "concurrent_requests": 4,
        "arrival_pattern": "poisson",
        "rate_per_second": 2,
        "prompt_tokens_min": 100,
        "prompt_tokens_max": 200,
        "completion_tokens": 64,
    },
    "telemetry": {"enabled": True, "interval_seconds": 2, "gpu_metrics": ["power"]},
}


def test_a_testbench_file_reads_unchanged_and_keeps_what_it_cannot_set(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, TESTBENCH, "bench.yaml"))
    assert (suite.name, suite.description, suite.targets) == (
        "llama-context",
        "context sweep",
        ("http://127.0.0.1:9",),
    )
    assert suite.metadata["server"] == {"quantization": "fp8", "tensor_parallel_size": 2}
    assert suite.metadata["benchmark"] == {"owner": "platform"}
    assert suite.metadata["telemetry"] == {"gpu_metrics": ["power"]}
    assert suite.metadata["not_applied"] == {"requests.concurrent_requests": 4}
    notes = " | ".join(suite.notes)
    assert "quantization=fp8, tensor_parallel_size=2" in notes
    assert "concurrent_requests 4 not applied" in notes
    assert suite.telemetry.interval_s == 2 and suite.telemetry.gpu
    workloads = [suite.workload_at(p) for p in suite.points()]
    assert [w.workload.prompt_tokens.value for w in workloads] == [1024 - 64, 4096 - 64]
    first = workloads[0].workload
    assert first.models == (("meta-llama/Llama-3.1-8B-Instruct", 1.0),)
    assert (first.requests, first.arrival.rate, first.output_tokens.value) == (20, 2, 64)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"sweep": {"prompt_tokns": [1]}},
            r"sweep\.prompt_tokns: unknown workload field; allowed: rate, concurrency",
        ),
        (
            {"sweep": {"rate": {"from": 1, "to": 4}}},
            r"sweep\.rate: a range takes exactly one of points, step or factor",
        ),
        (
            {"sweep": {"rate": {"from": 1, "to": 4, "points": 1}}},
            r"sweep\.rate\.points: .*greater than or equal to 2",
        ),
        ({"sweep": {"rate": 4}}, r"sweep\.rate: expected a list of values or a range"),
        ({"sweep": {"rate": []}}, r"sweep\.rate: give at least one value"),
        (
            {"sweep": {"concurrency": [2.5]}},
            r"sweep point concurrency=2\.5: concurrency: expected an integer",
        ),
        (
            {"sweep": {"output_tokens": [8, -3]}},
            r"sweep point output_tokens=-3: output_tokens: must be a positive integer",
        ),
        (
            {"stop_when": {"ttft": 2}},
            r"stop_when\.ttft: unknown field; allowed: error_rate, ttft_p99",
        ),
        ({"stop_when": {"error_rate": 2}}, r"stop_when\.error_rate: .*less than or equal to 1"),
        (
            {"search": {"field": "duration", "meets": {"ttft_p99": 1}}},
            r"search\.field: Input should be 'rate' or 'concurrency'",
        ),
        ({"search": {"field": "rate", "meets": {}}}, r"meets: give at least one of error_rate"),
        (
            {"search": {"field": "rate", "meets": {"ttft_p99": 1}}, "sweep": {"rate": [1]}},
            r"search\.field rate is also swept",
        ),
        ({"colour": "red"}, r"colour: unknown field; allowed: name, description, targets"),
        (
            {"telemetry": {"gpus": True}},
            r"telemetry\.gpus: unknown field; allowed: gpu, replicas, interval",
        ),
        (
            {"workload": "no-such-workload"},
            r"workload 'no-such-workload': no such file and not a built-in",
        ),
        ({"cooldown": -1}, r"cooldown: .*greater than or equal to 0"),
    ],
)
def test_bad_suites_name_the_field_and_what_is_allowed(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(SuiteError, match=message) as caught:
        load_suite(write(tmp_path, suite_of(tmp_path, **change)))
    assert str(caught.value).startswith(f"suite {tmp_path / 'suite.yaml'}: ")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {
                "model": None,
                "requests": {
                    "num_requests": 5,
                    "rate_per_second": 1,
                    "completion_tokens": 4,
                    "prompt_tokens_min": 1,
                    "prompt_tokens_max": 2,
                },
            },
            r"model: missing; give model: NAME",
        ),
        ({"requests": {"num_requests": 0}}, r"num_requests: .*greater than or equal to 1"),
        ({"context_lengths": "8k"}, r"context_lengths: expected a list of token counts"),
        ({"benchmark": "x"}, r"benchmark: expected a mapping"),
        (
            {"gpus": 8},
            r"gpus: unknown field; allowed: benchmark, model, context_lengths, requests, telemetry",
        ),
    ],
)
def test_bad_testbench_files_name_the_field(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(SuiteError, match=message):
        load_suite(write(tmp_path, {**TESTBENCH, **change}, "bench.yaml"))


def test_built_in_suites_load_and_unknown_names_list_them() -> None:
    names = builtin_suites()
    assert set(names) == {"context-sweep", "concurrency-sweep", "rate-to-saturation", "ten-users"}
    context = load_suite("context-sweep")
    values = [p["context_length"] for p in context.points()]
    assert values[0] == 8000 and values[-1] == 128000
    assert load_suite("concurrency-sweep").points()[-1] == Point((("concurrency", 256),), 0)
    assert load_suite("rate-to-saturation").search is not None
    assert [p["concurrency"] for p in load_suite("ten-users").points()] == [1, 10]
    with pytest.raises(SuiteError, match="built-ins: concurrency-sweep, context-sweep"):
        load_suite("no-such-suite")


def test_the_command_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from loadtest.cli import app

    runner = CliRunner()
    out = ["--out", str(tmp_path / "r")]
    cases = [
        ({"workload": WORKLOAD}, [], "no target: give targets: [URL or environment]"),
        (suite_of(tmp_path, targets=["basline"]), [], "targets: unknown environment 'basline'"),
        (suite_of(tmp_path), ["--target", "nowhere"], "--target: unknown environment 'nowhere'"),
        (suite_of(tmp_path), ["--time-scale", "0"], "--time-scale must be positive"),
        (suite_of(tmp_path, sweep={"rate": [0]}), [], "rate must be positive, got 0"),
    ]
    for data, extra, message in cases:
        path = write(tmp_path, data)
        done = runner.invoke(app, ["suite", "run", str(path), *out, *extra])
        assert done.exit_code == 2, done.output
        assert message in done.output and done.output.startswith("error: ")
    assert not (tmp_path / "r").exists(), "nothing may be written for a suite that cannot run"
