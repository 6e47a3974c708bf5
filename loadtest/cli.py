"""`loadtest`: drive OpenAI endpoints with workloads and compare deployments."""

import typer

from loadtest import run_command

app = typer.Typer(add_completion=False, no_args_is_help=True)

# Commands live in small modules; this file only registers them.
app.command(name="run")(run_command.run)
app.command(name="workloads")(run_command.workloads)


@app.command()
def compare(a: str, b: str) -> None:
    """Run one seeded schedule against environments A and B and compare them."""


def main() -> None:
    app()
