"""`loadtest cost`: dollars per million tokens on your fleet, next to an API's list prices."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from loadtest.cost.estimate import Cost, Throughput, ThroughputError, estimate, read_throughput
from loadtest.cost.prices import ApiPrice, GpuPrice, PricesError, PriceTable, Source, load_prices


def _usd(value: float) -> str:
    if value < 0.1:
        return f"${value:.4f}"
    return f"${value:,.3f}" if value < 10 else f"${value:,.2f}"


def _ratio(value: float) -> str:
    return f"{value:.2f}" if value >= 0.1 else f"{value:.3f}"


def _times(low: float, high: float | None = None) -> str:
    if high is None or _ratio(low) == _ratio(high):
        return _ratio(low) + "x"
    return f"{_ratio(low)}-{_ratio(high)}x"


def _span(values: list[float]) -> str:
    low, high = min(values), max(values)
    return _usd(low) if low == high else f"{_usd(low)}-{_usd(high)}"


def cost_command(
    from_path: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="A loadtest run summary.json, batch summary or compare.json (or its folder).",
        ),
    ] = None,
    side: Annotated[str | None, typer.Option(help="Side of a compare.json: a or b.")] = None,
    input_tokens_per_s: Annotated[
        float | None, typer.Option(min=0.0, help="Measured input tokens/s (instead of --from).")
    ] = None,
    output_tokens_per_s: Annotated[
        float | None, typer.Option(min=0.0, help="Measured output tokens/s (instead of --from).")
    ] = None,
    gpu: Annotated[
        str | None, typer.Option(help="GPU in the price table: H100, H200, B200, L4, RTX-PRO-6000.")
    ] = None,
    gpus: Annotated[int, typer.Option(min=1, help="GPUs that served the measured traffic.")] = 1,
    price_per_hour: Annotated[
        float | None,
        typer.Option(min=0.0001, help="Your price per GPU-hour in USD (over the table)."),
    ] = None,
    api: Annotated[
        str, typer.Option(help="API to compare with, from the price table.")
    ] = "gpt-4o-mini",
    api_input_price: Annotated[
        float | None, typer.Option(min=0.0001, help="Your API's USD per million input tokens.")
    ] = None,
    api_output_price: Annotated[
        float | None, typer.Option(min=0.0001, help="Your API's USD per million output tokens.")
    ] = None,
    prices: Annotated[
        Path | None,
        typer.Option(
            help="Your prices YAML over the built-in one.",
            show_default="./turnout-prices.yaml if present",
        ),
    ] = None,
) -> None:
    """Print what a million input and output tokens cost on GPUS x GPU at the measured
    throughput, for each price in the table, next to an API's list prices (docs/cost.md)."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # tables of this width read badly folded to 80 columns
    try:
        table = load_prices(prices)
        throughput = _throughput(from_path, side, input_tokens_per_s, output_tokens_per_s)
        rows = _gpu_prices(table, gpu, price_per_hour)
        reference = _api(table, api, api_input_price, api_output_price)
        costs = [estimate(throughput, gpus, row.usd_per_hour, reference) for row in rows]
    except (PricesError, ThroughputError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    name = table.gpu(gpu).name if gpu and price_per_hour is None else (gpu or "GPU")
    _print(console, throughput, gpus, name, rows, costs, reference, table)


def _throughput(
    from_path: Path | None, side: str | None, tokens_in: float | None, tokens_out: float | None
) -> Throughput:
    if from_path is not None:
        if tokens_in is not None or tokens_out is not None:
            raise ThroughputError("give --from or the tokens-per-second options, not both")
        return read_throughput(from_path, side)
    if tokens_out is None:
        raise ThroughputError(
            "give the measured throughput: --from a summary, or --output-tokens-per-s "
            "(and --input-tokens-per-s)"
        )
    return Throughput(tokens_in or 0.0, tokens_out, "given on the command line")


def _gpu_prices(table: PriceTable, gpu: str | None, price: float | None) -> list[GpuPrice]:
    if price is not None:
        return [GpuPrice(price, "your price", Source("you", "today"))]
    if gpu is None:
        known = ", ".join(g.key for g in table.gpus.values())
        raise PricesError(f"give --gpu (one of {known}) or --price-per-hour")
    return list(table.gpu(gpu).prices)


def _api(table: PriceTable, name: str, price_in: float | None, price_out: float | None) -> ApiPrice:
    if (price_in is None) != (price_out is None):
        raise PricesError("give both --api-input-price and --api-output-price")
    if price_in is not None and price_out is not None:
        return ApiPrice("your API", "your API", price_in, price_out, Source("you", "today"))
    return table.api(name)


def _print(
    console: Console,
    throughput: Throughput,
    gpus: int,
    gpu_name: str,
    rows: list[GpuPrice],
    costs: list[Cost],
    reference: ApiPrice,
    table: PriceTable,
) -> None:
    console.print(
        f"measured: {throughput.input_tokens_per_s:,.0f} input + "
        f"{throughput.output_tokens_per_s:,.0f} output tokens/s ({throughput.source})",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"fleet: {gpus} x {gpu_name}; reference: {reference.name} at "
        f"{_usd(reference.input_usd_per_million)} in / {_usd(reference.output_usd_per_million)} "
        "out per million tokens",
        highlight=False,
        soft_wrap=True,
    )
    out = Table(title="$ per million tokens on the fleet", title_justify="left")
    for column, justify in (
        ("$/GPU-h", "right"),
        ("price from", "left"),
        ("date", "left"),
        ("fleet $/h", "right"),
        ("$/M in", "right"),
        ("$/M out", "right"),
        ("fleet / API", "right"),
    ):
        out.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row, cost in zip(rows, costs, strict=True):
        note = " [yellow]*[/yellow]" if row.source.note else ""
        out.add_row(
            _usd(row.usd_per_hour),
            row.label() + note,
            row.source.date,
            _usd(cost.fleet_usd_per_hour),
            _usd(cost.usd_per_million_input),
            _usd(cost.usd_per_million_output),
            _times(cost.fleet_over_api),
        )
    console.print(out)
    console.print(
        f"$/M in and out split the fleet's cost the way {reference.key} prices input against "
        f"output. All cost charged to output tokens: "
        f"{_span([c.usd_per_million_output_all for c in costs])} per million output tokens; "
        f"per million tokens in or out: {_span([c.usd_per_million_tokens for c in costs])}.",
        highlight=False,
        soft_wrap=True,
    )
    others = Table(title="The same traffic at API list prices", title_justify="left")
    for column in ("API", "$/M in", "$/M out", "$/h for this traffic", "fleet / API"):
        others.add_column(column, justify="left" if column == "API" else "right")
    apis = list(table.apis.values())
    if reference not in apis:
        apis.insert(0, reference)
    for other in apis:
        ratios = [c.fleet_usd_per_hour for c in costs]
        api_hour = estimate(throughput, 1, 1.0, other).api_usd_per_hour
        out_ratio = [r / api_hour for r in ratios]
        low, high = min(out_ratio), max(out_ratio)
        others.add_row(
            other.key,
            _usd(other.input_usd_per_million),
            _usd(other.output_usd_per_million),
            _usd(api_hour),
            _times(low, high),
        )
    console.print(others)
    console.print("sources (prices move: check before quoting):", highlight=False)
    for row in rows:
        _cite(console, f"{_usd(row.usd_per_hour)} {row.source.provider}", row.source)
    for other in apis:
        _cite(console, other.key, other.source)


def _cite(console: Console, what: str, source: Source) -> None:
    console.print(
        f"  {what}: {source.cite()} ({source.date})"
        + (f" [yellow]* {source.note}[/yellow]" if source.note else ""),
        highlight=False,
        soft_wrap=True,
    )
