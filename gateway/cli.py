"""`gateway`: run the Turnout gateway.

Every GatewaySettings field is an option here and a GATEWAY_* variable; an option given
on the command line wins over the environment. A configuration that cannot work stops
start-up with one line saying what is wrong and what is allowed, and exit code 2.
"""

import asyncio
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import uvicorn
from pydantic import ValidationError

from gateway.app import check_strategy, create_app
from gateway.replicas_file import ConfigError, identify_kinds, load_replica_specs
from gateway.server import GatewayProtocol
from gateway.settings import GatewaySettings
from gateway.startup import fit_connection_cap
from gateway.workers import serve_workers
from turnout.logs import configure_logging, get_logger

LOG_LEVELS = ("debug", "info", "warning", "error")

app = typer.Typer(add_completion=False, no_args_is_help=False)


def _fail(message: str) -> NoReturn:
    print(f"gateway: error: {message}", file=sys.stderr)
    raise typer.Exit(code=2)


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["loc"]:
            field = str(error["loc"][0])
            message = f"--{field.replace('_', '-')} / GATEWAY_{field.upper()}: {message}"
        problems.append(message)
    return "; ".join(problems)


def _option(field: str) -> Any:
    """The CLI option for a settings field, documented from the field itself."""
    return typer.Option(help=_help(field))


def _help(field: str) -> str:
    info = GatewaySettings.model_fields[field]
    default = info.get_default(call_default_factory=True)
    shown = f" (default: {default})" if default not in (None, [], {}) else ""
    return f"{info.description or ''}{shown} Env: GATEWAY_{field.upper()}."


@app.command()
def serve(
    replicas: Annotated[str | None, _option("replicas")] = None,
    replicas_file: Annotated[Path | None, _option("replicas_file")] = None,
    discovery: Annotated[str | None, _option("discovery")] = None,
    k8s_service: Annotated[str | None, _option("k8s_service")] = None,
    k8s_namespace: Annotated[str | None, _option("k8s_namespace")] = None,
    k8s_port: Annotated[str | None, _option("k8s_port")] = None,
    strategy: Annotated[str | None, _option("strategy")] = None,
    strategy_options: Annotated[str | None, _option("strategy_options")] = None,
    host: Annotated[str | None, _option("host")] = None,
    port: Annotated[int | None, _option("port")] = None,
    poll_interval: Annotated[float | None, _option("poll_interval")] = None,
    health_interval: Annotated[float | None, _option("health_interval")] = None,
    connect_timeout: Annotated[float | None, _option("connect_timeout")] = None,
    first_byte_timeout: Annotated[float | None, _option("first_byte_timeout")] = None,
    idle_timeout: Annotated[float | None, _option("idle_timeout")] = None,
    max_body_bytes: Annotated[int | None, _option("max_body_bytes")] = None,
    read_timeout: Annotated[float | None, _option("read_timeout")] = None,
    send_timeout: Annotated[float | None, _option("send_timeout")] = None,
    max_connections: Annotated[int | None, _option("max_connections")] = None,
    max_requests: Annotated[int | None, _option("max_requests")] = None,
    api_keys: Annotated[str | None, _option("api_keys")] = None,
    api_keys_file: Annotated[Path | None, _option("api_keys_file")] = None,
    key_rate: Annotated[float | None, _option("key_rate")] = None,
    key_concurrency: Annotated[int | None, _option("key_concurrency")] = None,
    admin_key: Annotated[str | None, _option("admin_key")] = None,
    allow_open_admin: Annotated[
        bool | None, typer.Option("--allow-open-admin", help=_help("allow_open_admin"))
    ] = None,
    log_level: Annotated[str | None, _option("log_level")] = None,
    workers: Annotated[int | None, _option("workers")] = None,
) -> None:
    """Serve the OpenAI-compatible gateway in front of the configured replicas.

    Each option can also be set as a GATEWAY_<NAME> environment variable.
    """
    given: dict[str, Any] = {k: v for k, v in locals().items() if v is not None}
    try:
        settings = GatewaySettings(**given)
    except ValidationError as exc:
        _fail(_describe(exc))
    if settings.log_level.lower() not in LOG_LEVELS:
        _fail(f"unknown log level {settings.log_level!r}; allowed: {', '.join(LOG_LEVELS)}")
    configure_logging(settings.log_level)
    cap, files = fit_connection_cap(settings.max_connections)
    if cap < settings.max_connections:
        get_logger("gateway.cli").warning(
            "max_connections_lowered", max_connections=cap, open_files_limit=files
        )
        settings = settings.model_copy(update={"max_connections": cap})
    try:
        specs = load_replica_specs(settings)
        check_strategy(settings)
        # Replicas that answer now are asked what they are: a configured kind their
        # answers contradict stops start-up here, like any other configuration error.
        specs = asyncio.run(identify_kinds(specs, settings.connect_timeout))
        gateway = create_app(settings, specs)
    except ConfigError as exc:
        _fail(str(exc))
    _warn_unknown_variables()
    server: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level.lower(),
        # One structured line per request comes from the relay; uvicorn's would double it.
        "access_log": False,
        "loop": "uvloop",
        # uvicorn's httptools protocol plus read and send timeouts and a connection cap.
        "http": GatewayProtocol,
        "timeout_graceful_shutdown": 5,
        # Nothing reads the client address a proxy forwards (keys identify clients), and
        # uvicorn's middleware for it runs on every request.
        "proxy_headers": False,
        # No "server: uvicorn" on every answer: it tells clients nothing they need.
        "server_header": False,
        # Our structlog lines only; uvicorn's warnings and errors still reach stderr.
        "log_config": None,
    }
    if settings.workers > 1:
        # The app built above was the check; each worker builds its own.
        raise typer.Exit(code=serve_workers(settings, specs, server))
    uvicorn.run(gateway, **server)


def _warn_unknown_variables() -> None:
    """A misspelt GATEWAY_ variable would otherwise be ignored without a word."""
    known = {f"GATEWAY_{name.upper()}" for name in GatewaySettings.model_fields}
    for name in sorted(os.environ):
        if name.startswith("GATEWAY_") and name not in known:
            get_logger("gateway.cli").warning(
                "unknown_setting_ignored", variable=name, known=sorted(known)
            )


def main() -> None:
    app()
