"""`gateway`: run the Switchyard gateway."""

import typer

app = typer.Typer(add_completion=False, no_args_is_help=False)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", envvar="GATEWAY_HOST", help="Address to listen on."),
    port: int = typer.Option(8080, envvar="GATEWAY_PORT", help="Port to listen on."),
) -> None:
    """Serve the OpenAI-compatible gateway in front of the configured replicas."""
    raise typer.Exit(code=2)


def main() -> None:
    app()
