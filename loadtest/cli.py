"""`loadtest`: drive OpenAI endpoints with workloads and compare deployments."""

import typer

from loadtest import compare_command, run_command

app = typer.Typer(add_completion=False, no_args_is_help=True)

# Commands live in small modules; this file only registers them.
app.command(name="run")(run_command.run)
app.command(name="workloads")(run_command.workloads)
app.command(name="compare")(compare_command.compare_command)


def main() -> None:
    app()
