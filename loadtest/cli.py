"""`loadtest`: drive OpenAI endpoints with workloads and compare deployments."""

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True)


@app.command()
def workloads() -> None:
    """List the built-in workloads."""


@app.command()
def compare(a: str, b: str) -> None:
    """Run one seeded schedule against environments A and B and compare them."""


def main() -> None:
    app()
