"""`vllm-sim`: simulated vLLM replicas (`serve` one, or the reference `fleet`)."""

import asyncio
import sys

import typer
import uvicorn

from loadtest.sim.faces import FACES, face_named
from loadtest.sim.faults import ERROR_STATUSES, Faults
from loadtest.sim.fit import Fit
from loadtest.sim.hf_tokenizer import TokenizerError, load_tokenizer
from loadtest.sim.kvcache import KVCACHED_MAX_CACHED_TOKENS
from loadtest.sim.profiles import (
    DEFAULT_GPU_MEMORY_UTILIZATION,
    PROFILES,
    UnknownProfile,
    load_profile,
)
from loadtest.sim.replica import ReplicaConfig
from loadtest.sim.server import create_app
from turnout.logs import configure_logging, get_logger

app = typer.Typer(add_completion=False, no_args_is_help=True)


def _fail(message: str) -> None:
    typer.echo(f"vllm-sim: {message}", err=True)
    raise typer.Exit(2)


def face_problem(present_as: str, metrics: bool | None, legacy_metrics: bool) -> str | None:
    """What is wrong with these presentation options, or None."""
    if present_as not in FACES:
        return f"--present-as must be one of {', '.join(FACES)}, not {present_as!r}"
    if metrics is not None and face_named(present_as).metrics_default is None:
        return f"--metrics/--no-metrics: {present_as} has no /metrics"
    if metrics is False and present_as == "vllm":
        return "--no-metrics: vLLM always serves /metrics"
    if legacy_metrics and present_as != "vllm":
        return "--legacy-metrics: only for --present-as vllm"
    return None


def uvicorn_config(app: object, host: str, port: int | None = None) -> uvicorn.Config:
    """uvicorn with uvloop and httptools, quiet, and quick to shut down."""
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port or 0,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )


@app.command()
def serve(
    model: str = typer.Option(..., help="Model name to serve (what clients put in `model`)."),
    profile: str = typer.Option(
        "llama-3.1-8b-h100", help="A profile (`vllm-sim profiles`, or any composable name)."
    ),
    port: int = typer.Option(8000, help="Port to listen on."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    max_num_seqs: int = typer.Option(256, min=1, help="Most requests running at once."),
    max_num_batched_tokens: int = typer.Option(8192, min=1, help="Token budget of one step."),
    kv_blocks: int | None = typer.Option(None, min=1, help="KV blocks (default: profile)."),
    prefix_caching: bool = typer.Option(True, help="Reuse cached prompt blocks."),
    kv_mode: str = typer.Option("static", help="static (vLLM) or elastic (KVCached)."),
    kv_pool: str | None = typer.Option(None, help="Elastic pool name (shared in-process)."),
    gpu_memory_utilization: float = typer.Option(
        DEFAULT_GPU_MEMORY_UTILIZATION,
        min=0.05,
        max=1.0,
        help="Share of GPU memory for weights, activations and KV (vLLM's flag).",
    ),
    max_cached_tokens: int = typer.Option(
        KVCACHED_MAX_CACHED_TOKENS,
        min=-1,
        help="Elastic: tokens of freed prefixes kept (-1: no bound, 0: none).",
    ),
    time_scale: float = typer.Option(1.0, min=0.0, help="Multiply every simulated duration."),
    seed: int = typer.Option(0, help="Seed for output lengths, text and faults."),
    legacy_metrics: bool = typer.Option(False, help="Emit vLLM's pre-0.9 metric names."),
    present_as: str = typer.Option("vllm", help=f"The server to play: {', '.join(FACES)}."),
    metrics: bool | None = typer.Option(
        None, "--metrics/--no-metrics", help="/metrics on or off (default: as that server)."
    ),
    health_delay: float | None = typer.Option(
        None, min=0.0, help="Seconds /health takes (default: 1 for sglang, else 0)."
    ),
    max_queue: int = typer.Option(512, min=0, help="Ollama's OLLAMA_MAX_QUEUE (ollama only)."),
    interrupt_requests: bool = typer.Option(
        True, help="llama-cpp-python: a waiting request ends the stream in progress."
    ),
    tokenizer: str | None = typer.Option(
        None,
        help="Count prompt tokens with this tokenizer (a directory with tokenizer.json, or a "
        "model name in the local Hugging Face cache); default: the approximate tokenizer.",
    ),
    fault_error_rate: float = typer.Option(0.0, min=0.0, max=1.0, help="Fraction answered 500."),
    fault_error_status: int = typer.Option(500, help="Status of those errors (500/502/503/504)."),
    fault_429_rate: float = typer.Option(0.0, min=0.0, max=1.0, help="Fraction answered 429."),
    fault_drop_rate: float = typer.Option(0.0, min=0.0, max=1.0, help="Fraction dropped."),
    fault_slow: float = typer.Option(1.0, min=0.001, help="Step time multiplier."),
    fault_metrics_delay: float = typer.Option(0.0, min=0.0, help="Seconds /metrics waits."),
    fault_metrics_hang: bool = typer.Option(False, help="/metrics never answers."),
    fault_health_fail: bool = typer.Option(False, help="/health answers 503."),
    fault_stall_after: int | None = typer.Option(None, min=0, help="Streams stall after N."),
    fault_stall_seconds: float | None = typer.Option(None, min=0.0, help="Stall length."),
    fault_drop_after: int | None = typer.Option(None, min=0, help="Streams cut after N."),
    log_level: str = typer.Option("info", help="Log level."),
) -> None:
    """Serve one simulated replica (vLLM, or the server given by --present-as)."""
    configure_logging(log_level)
    if kv_mode not in ("static", "elastic"):
        _fail(f"--kv-mode must be static or elastic, not {kv_mode!r}")
    try:
        chosen = load_profile(profile)
    except UnknownProfile as exc:
        _fail(str(exc))
        return
    if chosen.engine != "vllm" and kv_mode != "static":
        _fail(f"--kv-mode {kv_mode}: profile {profile} runs {chosen.engine}, whose slots are fixed")
    if fault_error_status not in ERROR_STATUSES:
        _fail("--fault-error-status must be one of 500, 502, 503, 504")
    problem = face_problem(present_as, metrics, legacy_metrics)
    if problem:
        _fail(problem)
    encoder = None
    if tokenizer is not None:
        try:
            encoder = load_tokenizer(tokenizer)
        except TokenizerError as exc:
            _fail(f"--tokenizer: {exc}")
    faults = Faults(
        error_rate=fault_error_rate,
        error_status=fault_error_status,
        rate_limit_rate=fault_429_rate,
        drop_rate=fault_drop_rate,
        step_multiplier=fault_slow,
        metrics_delay=fault_metrics_delay,
        metrics_hang=fault_metrics_hang,
        health_fail=fault_health_fail,
        stall_after=fault_stall_after,
        stall_seconds=fault_stall_seconds,
        drop_after=fault_drop_after,
    )
    config = ReplicaConfig(
        model=model,
        profile=profile,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        kv_blocks=kv_blocks,
        prefix_caching=prefix_caching,
        kv_mode=kv_mode,  # type: ignore[arg-type]
        kv_pool=kv_pool,
        gpu_memory_utilization=gpu_memory_utilization,
        max_cached_tokens=max_cached_tokens,
        time_scale=time_scale,
        seed=seed,
        legacy_metrics=legacy_metrics,
        faults=faults,
        present_as=present_as,
        metrics=metrics,
        health_delay=(1.0 if present_as == "sglang" else 0.0)
        if health_delay is None
        else health_delay,
        max_queue=max_queue,
        interrupt_requests=interrupt_requests,
        tokenizer=tokenizer,
    )
    get_logger("vllm_sim").info(
        "replica_starting",
        model=model,
        profile=profile,
        present_as=present_as,
        url=f"http://{host}:{port}",
        time_scale=time_scale,
        kv_mode=kv_mode,
        prefix_caching=prefix_caching,
        tokenizer=tokenizer or "approximate",
        faults={k: v for k, v in faults.as_dict().items() if v != getattr(Faults(), k)},
    )
    server = uvicorn.Server(uvicorn_config(create_app(config, encoder=encoder), host, port))
    server.run()
    if not server.started:
        sys.exit(1)


@app.command()
def fleet(
    name: str = typer.Argument(..., help="A deployed layout: `vllm-sim fleet --help` lists them."),
    base_port: int = typer.Option(8001, help="Replica i listens on base-port + i."),
    time_scale: float = typer.Option(1.0, min=0.0, help="Multiply every simulated duration."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    processes: int = typer.Option(2, min=1, max=6, help="Processes to spread replicas over."),
    gpu_memory_utilization: float = typer.Option(
        DEFAULT_GPU_MEMORY_UTILIZATION,
        min=0.05,
        max=1.0,
        help="Share of each GPU's memory for weights, activations and KV (split over its engines).",
    ),
    gpu: str | None = typer.Option(None, help="Run the layout on this GPU (e.g. b200)."),
    precision: str | None = typer.Option(None, help="... with weights in this format (fp4)."),
    kv_dtype: str | None = typer.Option(None, help="... with this KV cache dtype (fp8)."),
    profile: list[str] = typer.Option(  # noqa: B008  (typer's way)
        [], help="OLD=NEW: serve the layout's profile OLD as NEW instead (repeatable)."
    ),
    log_level: str = typer.Option("warning", help="Log level."),
) -> None:
    """Start fleet NAME's replicas (see loadtest/sim/layout.py); stop them on Ctrl-C or SIGTERM.

    NAME: baseline, baseline-noprefix, managed, managed-prefix (the six reference replicas) or
    colocated-static, colocated-elastic (two models on each of four GPUs).
    """
    from loadtest.sim.fleet import run_fleet
    from loadtest.sim.layout import FLEETS, on_hardware

    configure_logging(log_level)
    if name not in FLEETS:
        _fail(f"unknown fleet {name!r}; available: {', '.join(FLEETS)}")
    pairs = [item.split("=", 1) for item in profile]
    if any(len(pair) != 2 or not all(pair) for pair in pairs):
        _fail("--profile takes OLD=NEW, e.g. llama-3.1-8b-h100=llama-3.1-8b-fp4-b200")
    try:
        remap = on_hardware(gpu, precision, kv_dtype, dict(pairs))
    except ValueError as exc:
        _fail(str(exc))
        return
    code = asyncio.run(
        run_fleet(name, base_port, time_scale, host, processes, gpu_memory_utilization, remap)
    )
    raise typer.Exit(code)


@app.command()
def profiles(
    gpu_memory_utilization: float = typer.Option(
        DEFAULT_GPU_MEMORY_UTILIZATION, min=0.05, max=1.0, help="Memory share for KV capacity."
    ),
    context: int = typer.Option(1200, min=1, help="Tokens of context for the decode ITL."),
    name: list[str] = typer.Argument(  # noqa: B008  (typer's way)
        None, help="Profiles to show (default: the shipped ones); any composable name works."
    ),
) -> None:
    """List profiles with their key numbers (docs/simulator.md explains each column)."""
    from loadtest.sim.listing import profile_table

    try:
        typer.echo(profile_table(name or list(PROFILES), gpu_memory_utilization, context))
    except UnknownProfile as exc:
        _fail(str(exc))


@app.command()
def fit(
    profile: str = typer.Option(..., help="The profile of the replica (`vllm-sim profiles`)."),
    ttft_p99: float = typer.Option(2.0, min=0.001, help="TTFT p99 target, seconds."),
    contexts: str = typer.Option(
        "2048,4096,8192,16384,32768,65536,131072", help="Context windows to try, tokens."
    ),
    output_tokens: int = typer.Option(256, min=1, help="Output tokens of every request."),
    max_users: int = typer.Option(64, min=1, help="Most concurrent users to try."),
    requests_per_user: int = typer.Option(8, min=2, help="Requests each user sends in turn."),
    max_num_seqs: int = typer.Option(256, min=1, help="Most sequences at once (Ollama: slots)."),
    max_num_batched_tokens: int = typer.Option(8192, min=1, help="Token budget of one step."),
    kv_blocks: int | None = typer.Option(None, min=1, help="KV blocks (default: profile)."),
    gpu_memory_utilization: float = typer.Option(
        DEFAULT_GPU_MEMORY_UTILIZATION, min=0.05, max=1.0, help="vLLM's memory share."
    ),
) -> None:
    """The largest context window and number of concurrent users one replica serves with
    TTFT p99 under the target, in virtual time (docs/simulator.md, "vllm-sim fit")."""
    from loadtest.sim.engine import EngineConfig
    from loadtest.sim.fit import fit as fit_context

    try:
        windows = [int(item) for item in contexts.split(",") if item.strip()]
    except ValueError:
        _fail(f"--contexts takes token counts separated by commas, not {contexts!r}")
        return
    if not windows or min(windows) <= output_tokens:
        _fail("--contexts: each window must be longer than --output-tokens")
    try:
        load_profile(profile)
    except UnknownProfile as exc:
        _fail(str(exc))
    config = EngineConfig(
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max(max_num_batched_tokens, max_num_seqs),
        num_blocks=kv_blocks,
        prefix_caching=False,
        gpu_memory_utilization=gpu_memory_utilization,
    )
    typer.echo(
        f"{profile}: TTFT p99 under {ttft_p99:g} s, requests filling the window "
        f"({output_tokens} output tokens), up to {max_users} users"
    )
    typer.echo(
        f"{'context':>8}  {'windows in KV':>13}  {'users':>5}  {'TTFT p99':>9}  "
        f"{'TPOT p50':>9}  {'tok/s/user':>10}  {'tok/s':>7}  next"
    )
    for window in windows:
        try:
            found = fit_context(
                profile,
                config,
                window,
                ttft_p99=ttft_p99,
                output=output_tokens,
                max_users=max_users,
                per_user=requests_per_user,
            )
        except ValueError as exc:
            _fail(str(exc))
            return
        typer.echo(_fit_line(found))


def _fit_line(found: Fit) -> str:
    head = f"{found.context:>8,}  {found.kv_windows:>13.1f}"
    best, miss = found.best, found.first_miss
    after = (
        f"{miss.users} users: TTFT p99 {miss.ttft_p99:.2f} s"
        + (f", {miss.refused} refused" if miss.refused else "")
        if miss
        else "-"
    )
    if best is None:
        if miss is None:
            return f"{head}  {'-':>5}  does not fit (longer than the model's window or the KV)"
        return f"{head}  {0:>5}  {'-':>9}  {'-':>9}  {'-':>10}  {'-':>7}  {after}"
    per_user = 1 / best.tpot_p50 if best.tpot_p50 > 0 else 0.0
    return (
        f"{head}  {best.users:>5}  {best.ttft_p99:>8.2f}s  {best.tpot_p50 * 1e3:>7.1f}ms  "
        f"{per_user:>10.1f}  {best.tokens_per_s:>7.0f}  {after}"
    )


def main() -> None:
    app()
