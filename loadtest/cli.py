"""`loadtest`: drive OpenAI endpoints with workloads and compare deployments."""

import typer

from loadtest.commands import batch, compare, cost, run, study, suite

app = typer.Typer(add_completion=False, no_args_is_help=True)

# Commands live in small modules; this file only registers them.
app.command(name="run")(run.run)
app.command(name="workloads")(run.workloads)
app.command(name="compare")(compare.compare_command)
app.add_typer(batch.batch_app, name="batch")
app.command(name="cost")(cost.cost_command)
app.add_typer(suite.suite_app, name="suite")
app.command(name="study")(study.study_command)


def main() -> None:
    app()
