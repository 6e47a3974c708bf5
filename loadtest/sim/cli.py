"""`vllm-sim`: simulated vLLM replicas."""

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True)


@app.command()
def serve(model: str = typer.Option(..., help="Model name to serve.")) -> None:
    """Serve one simulated vLLM replica."""


@app.command()
def fleet(name: str) -> None:
    """Start the six reference replicas (baseline or managed)."""


def main() -> None:
    app()
