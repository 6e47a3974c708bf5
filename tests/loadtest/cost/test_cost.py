from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner, Result

from loadtest.cli import app
from loadtest.cost.estimate import Throughput, ThroughputError, estimate, read_throughput
from loadtest.cost.prices import ApiPrice, PricesError, Source, load_prices

API = ApiPrice("ref", "ref", 0.5, 2.0, Source("x", "n.d."))


def test_the_fleets_hour_is_split_so_that_the_traffic_pays_exactly_for_it() -> None:
    traffic = Throughput(1000.0, 3000.0, "t")
    cost = estimate(traffic, gpus=8, usd_per_gpu_hour=3.0, api=API)
    paid = (
        1000 * 3600 * cost.usd_per_million_input + 3000 * 3600 * cost.usd_per_million_output
    ) / 1e6
    assert paid == pytest.approx(cost.fleet_usd_per_hour) == pytest.approx(24.0)
    assert cost.usd_per_million_output / cost.usd_per_million_input == pytest.approx(2.0 / 0.5)
    assert cost.fleet_over_api == pytest.approx(24.0 / cost.api_usd_per_hour)
    assert cost.usd_per_million_output_all * 3000 * 3600 / 1e6 == pytest.approx(24.0)
    assert cost.usd_per_million_tokens * 4000 * 3600 / 1e6 == pytest.approx(24.0)


def test_cost_scales_with_gpus_and_price_and_inversely_with_throughput() -> None:
    base = estimate(Throughput(100.0, 500.0, "t"), 1, 2.0, API)
    assert estimate(
        Throughput(100.0, 500.0, "t"), 4, 2.0, API
    ).usd_per_million_output == pytest.approx(4 * base.usd_per_million_output)
    assert estimate(
        Throughput(200.0, 1000.0, "t"), 1, 2.0, API
    ).usd_per_million_output_all == pytest.approx(base.usd_per_million_output_all / 2)
    assert estimate(Throughput(100.0, 500.0, "t"), 1, 3.0, API).fleet_over_api == pytest.approx(
        1.5 * base.fleet_over_api
    )


def test_no_output_tokens_cannot_be_priced() -> None:
    with pytest.raises(ThroughputError, match="no output tokens"):
        estimate(Throughput(100.0, 0.0, "run x"), 1, 2.0, API)


def test_the_shipped_table_has_every_gpu_with_dated_sourced_prices() -> None:
    table = load_prices()
    assert {g.key for g in table.gpus.values()} >= {"H100", "H200", "B200", "L4", "RTX-PRO-6000"}
    for gpu in table.gpus.values():
        assert gpu.prices == tuple(sorted(gpu.prices, key=lambda p: p.usd_per_hour))
        for price in gpu.prices:
            assert price.source.date and (price.source.url or price.source.via)
    assert table.api("GPT-4o-mini").output_usd_per_million == 0.60
    assert table.gpu("rtx pro 6000") is table.gpu("RTX_PRO_6000")


def test_a_user_file_replaces_and_adds(tmp_path: Path) -> None:
    mine = tmp_path / "prices.yaml"
    mine.write_text(
        "gpus:\n  h100:\n    prices:\n      - {usd: 1.5, provider: us, date: '2026-10-01'}\n"
        "  MI300X:\n    prices:\n      - {usd: 2.0, provider: us, date: n.d.}\n"
        "apis:\n  mine: {input: 0.1, output: 0.2, provider: us, date: n.d.}\n"
    )
    table = load_prices(mine)
    assert [p.usd_per_hour for p in table.gpu("H100").prices] == [1.5]
    assert table.gpu("mi300x").prices[0].source.provider == "us"
    assert table.gpu("B200").prices  # shipped entries stay
    assert table.api("mine").input_usd_per_million == 0.1


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("gpus: [1]", "gpus must be a mapping"),
        ("gpu: {}", "unknown section 'gpu'"),
        ("gpus:\n  X:\n    prices: []", "gpus.X.prices must be a non-empty list"),
        (
            "gpus:\n  X:\n    prices:\n      - {usd: 0, provider: a, date: n.d.}",
            r"gpus.X.prices\[0\].usd must be a number",
        ),
        (
            "gpus:\n  X:\n    prices:\n      - {usd: 1, date: n.d.}",
            r"gpus.X.prices\[0\].provider is required",
        ),
        (
            "gpus:\n  X:\n    prices:\n      - {usd: 1, provider: a}",
            r"gpus.X.prices\[0\].date is required",
        ),
        (
            "gpus:\n  X:\n    prices:\n      - {usd: 1, provider: a, date: x, cost: 2}",
            "unknown field 'cost'",
        ),
        (
            "apis:\n  a: {input: -1, output: 1, provider: a, date: x}",
            "apis.a.input must be a number",
        ),
        ("gpus: {X: {prices: [{usd: 1, provider: a, date: x}]}\n: :", "not valid YAML"),
    ],
)
def test_a_bad_prices_file_names_the_field(tmp_path: Path, text: str, says: str) -> None:
    mine = tmp_path / "prices.yaml"
    mine.write_text(text)
    with pytest.raises(PricesError, match=says):
        load_prices(mine)


def test_throughput_from_a_run_a_batch_summary_and_a_compare_side(tmp_path: Path) -> None:
    figures = {"prompt_tokens_per_s": 10.0, "output_tokens_per_s": 30.0}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "summary.json").write_bytes(orjson.dumps({"figures": figures}))
    assert read_throughput(tmp_path / "run").output_tokens_per_s == 30.0
    compare = tmp_path / "compare.json"
    other = {"prompt_tokens_per_s": 1.0, "output_tokens_per_s": 2.0}
    compare.write_bytes(
        orjson.dumps(
            {"a": {"figures": figures}, "b": {"figures": other, "environment": {"name": "qd"}}}
        )
    )
    side_b = read_throughput(compare, "b")
    assert (side_b.input_tokens_per_s, side_b.output_tokens_per_s) == (1.0, 2.0)
    assert "side b (qd)" in side_b.source
    with pytest.raises(ThroughputError, match="--side a or --side b"):
        read_throughput(compare)
    with pytest.raises(ThroughputError, match=r"--side applies to a compare\.json"):
        read_throughput(tmp_path / "run" / "summary.json", "a")
    broken = tmp_path / "broken.json"
    broken.write_bytes(orjson.dumps({"figures": {"output_tokens_per_s": "fast"}}))
    with pytest.raises(ThroughputError, match="prompt_tokens_per_s is missing"):
        read_throughput(broken)


def cost_cli(*args: str, cwd: Path) -> Result:
    """`loadtest cost ARGS` run in `cwd`, in this process (the entry point is tested apart)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        return CliRunner().invoke(app, ["cost", *args])


def test_the_command_prices_a_batch_summary_with_every_h100_price(tmp_path: Path) -> None:
    summary = tmp_path / "results.summary.json"
    summary.write_bytes(
        orjson.dumps(
            {
                "kind": "batch",
                "figures": {"prompt_tokens_per_s": 2000.0, "output_tokens_per_s": 6000.0},
            }
        )
    )
    done = cost_cli("--from", str(summary), "--gpu", "h100", "--gpus", "8", cwd=tmp_path)
    assert done.exit_code == 0, done.output
    fleet_hours = [f"${8 * p:.2f}" for p in (2.69, 3.49, 3.85, 4.29)]
    assert all(hour in done.output for hour in fleet_hours), done.output
    assert "2026-09-25" in done.output and "runpod.io/pricing" in done.output
    # all cost on output: 8 * 2.69 / (6000 * 3600) * 1e6 = 0.996; 8 * 4.29 / ... = 1.589
    assert "$0.996-$1.589 per million output tokens" in done.output


def test_the_command_reads_a_user_file_in_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "turnout-prices.yaml").write_text(
        "gpus:\n  H100:\n    prices:\n      - {usd: 1.25, provider: our-dc, date: '2026-10-01'}\n"
    )
    done = cost_cli("--output-tokens-per-s", "1000", "--gpu", "H100", cwd=tmp_path)
    assert done.exit_code == 0, done.output
    assert "our-dc" in done.output and "RunPod" not in done.output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--output-tokens-per-s", "100"], "give --gpu"),
        (["--output-tokens-per-s", "100", "--gpu", "A100"], "unknown GPU 'A100'"),
        (["--gpu", "H100"], "give the measured throughput"),
        (["--output-tokens-per-s", "100", "--gpu", "H100", "--api", "x"], "unknown API 'x'"),
        (
            ["--output-tokens-per-s", "100", "--price-per-hour", "2", "--api-input-price", "1"],
            "give both",
        ),
    ],
)
def test_the_command_explains_bad_input(tmp_path: Path, args: list[str], says: str) -> None:
    done = cost_cli(*args, cwd=tmp_path)
    assert done.exit_code == 2
    assert says in done.output
