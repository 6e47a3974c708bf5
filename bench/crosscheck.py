"""Cross-check loadtest's figures against a reference load generator (AIPerf) on one target.

The same seeded schedule (Poisson or evenly spaced arrivals, fixed prompt and output lengths,
ignore_eos, streaming chat) goes to TARGET twice: through loadtest's generator (run_schedule, what
`loadtest run` drives), then through AIPerf replaying the same requests at the same times
(bench/aiperf_tool.py). Only the words differ: each tool's prompts are drawn with their own
text seed (same token counts, template included), so that the server's prefix cache, warmed
by the first tool, does not speed up the second. Both tools' per-request samples are read
back and the p50 and p99 of TTFT, ITL, TPOT and E2E printed side by side, with loadtest /
AIPerf. Percentiles of both are computed here the same way (numpy, linear).

    python bench/crosscheck.py --target http://127.0.0.1:8000 --tokenizer DIR_OR_MODEL_NAME

Figures paired (docs/loadtest.md, "How each figure is defined"):
- TTFT: loadtest ttft_s vs AIPerf time_to_first_token;
- ITL: every gap between token chunks, pooled: itl_s vs inter_chunk_latency;
- TPOT: (e2e - ttft) / (output tokens - 1) per request: tpot_s vs inter_token_latency;
- E2E: to the last token chunk: e2e_s vs request_latency.

AIPerf is installed once (pinned, bench/aiperf-0.13.0-constraints.txt) in a venv under
--cache-dir (default $TURNOUT_CROSSCHECK_CACHE or ~/.cache/turnout/crosscheck) and reused.
`--install-only` just makes sure it is there. `--json FILE` writes the figures for scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import aiperf_tool  # noqa: E402
from aiperf_tool import Measured  # noqa: E402

from loadtest.analysis.results import write_results  # noqa: E402
from loadtest.analysis.summary import summarize  # noqa: E402
from loadtest.drive.runner import run_async, run_schedule  # noqa: E402
from loadtest.sim.hf_tokenizer import resolve_directory  # noqa: E402
from loadtest.sim.tokenizer import OUTPUT_WORDS  # noqa: E402
from loadtest.workload import Workload, parse_workload  # noqa: E402
from loadtest.workload.counting import TokenizerChoice, load_tokenizers  # noqa: E402
from loadtest.workload.prompts import WORD_UNITS  # noqa: E402
from loadtest.workload.schedule import Schedule, build_schedule  # noqa: E402

FIGURES = ("ttft", "itl", "tpot", "e2e")
# How far loadtest may be from AIPerf (|ratio - 1|) on a simulated replica (the test's bar).
TOLERANCE = {50: 0.05, 99: 0.10}
NAMES = {
    "ttft": "TTFT",
    "itl": "ITL (chunk gaps) / inter_chunk_latency",
    "tpot": "TPOT / inter_token_latency",
    "e2e": "E2E / request_latency",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", help="Base URL of the OpenAI-compatible server.")
    parser.add_argument("--model", help="Model to ask for (default: the first of /v1/models).")
    parser.add_argument(
        "--tokenizer",
        help="The served model's tokenizer (directory or cached model name); without it, "
        "prompts are sized with the simulator's approximate tokenizer.",
    )
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rate", type=float, default=4.0, help="Arrivals per second.")
    parser.add_argument(
        "--arrival",
        choices=("poisson", "constant"),
        default="poisson",
        help="Poisson (default) or evenly spaced arrivals.",
    )
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--output-tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--text-seed",
        type=int,
        help="Seed of loadtest's prompt words (AIPerf's: one more); default: from the clock, "
        "so that no earlier run warmed the server's prefix cache.",
    )
    parser.add_argument(
        "--workdir", type=Path, help="Where both tools write (default: a temp dir)."
    )
    parser.add_argument("--cache-dir", type=Path, default=aiperf_tool.default_cache_dir())
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="Change both tools' scheduling priority by this much (negative: ahead of other "
        "processes; needs root). On a busy machine it keeps them reading chunks as they arrive.",
    )
    parser.add_argument("--install-only", action="store_true", help="Install AIPerf and exit.")
    args = parser.parse_args(argv)
    if not args.install_only and not args.target:
        parser.error("--target is required (unless --install-only)")
    return args


def served_model(target: str) -> str:
    base = target.rstrip("/").removesuffix("/v1")
    models = httpx.get(f"{base}/v1/models", timeout=10).json()["data"]
    return str(models[0]["id"])


def placeholder_tokenizer(directory: Path) -> Path:
    """A word-level tokenizer for AIPerf's own bookkeeping when no tokenizer is given (token
    counts come from the server's usage either way, with --use-server-token-count)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = sorted({str(w).strip() for w in WORD_UNITS} | set(OUTPUT_WORDS))
    vocab = {t: i for i, t in enumerate(["<unk>", "<s>", "</s>", *words])}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "<unk>"}
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return directory


def make_workload(args: argparse.Namespace, model: str) -> Workload:
    spec = {
        "name": "crosscheck",
        "description": "bench/crosscheck.py: one model, fixed lengths",
        "models": [model],
        "prompt_tokens": args.prompt_tokens,
        "output_tokens": args.output_tokens,
        "arrival": {"process": args.arrival, "rate": args.rate},
        "requests": args.requests,
        "seed": args.seed,
        "ignore_eos": True,
        "stream": True,
        "api": "chat",
        "timeout": 300,
    }
    return parse_workload(spec, default_name="crosscheck", source="crosscheck")


def write_aiperf_schedule(schedule: Schedule, path: Path) -> None:
    """`schedule` as AIPerf's single_turn JSONL: send time (ms), text, output length."""
    with path.open("wb") as sink:
        for request in schedule.requests:
            line = {
                "timestamp": round(request.at_s * 1000, 3),
                "text": schedule.prompt(request),
                "output_length": request.max_tokens,
            }
            sink.write(orjson.dumps(line) + b"\n")


def run_loadtest(target: str, schedule: Schedule, out: Path) -> Measured:
    """loadtest's generator on `schedule`; its records and summary are written under `out`."""
    result = run_async(run_schedule(target, schedule))
    summary = summarize(result.records, schedule.workload)
    write_results(result, summary, out, "crosscheck")
    print(
        f"loadtest: lag p99 {result.lag.p99_s * 1000:.2f} ms, read delay p99 "
        f"{result.read_delay.p99_s * 1000:.2f} ms",
        flush=True,
    )
    ok = [r for r in result.records if r.ok]
    return Measured(
        ttft=np.array([r.ttft_s for r in ok if r.ttft_s is not None]),
        itl=np.array([gap for r in ok for gap in r.itl_s]),
        tpot=np.array([r.tpot_s for r in ok if r.tpot_s is not None]),
        e2e=np.array([r.e2e_s for r in ok if r.e2e_s is not None]),
        prompt_tokens=np.array([r.prompt_tokens for r in ok if r.prompt_tokens is not None]),
        ok=len(ok),
        failed=len(result.records) - len(ok),
    )


def figures(measured: Measured) -> dict[str, float]:
    out: dict[str, float] = {"ok": measured.ok, "failed": measured.failed}
    for name in FIGURES:
        values = getattr(measured, name)
        for q in (50, 99):
            out[f"{name}_p{q}_s"] = float(np.percentile(values, q)) if values.size else float("nan")
    out["prompt_tokens_mean"] = (
        float(measured.prompt_tokens.mean()) if measured.prompt_tokens.size else float("nan")
    )
    return out


def outside_tolerance(ours: dict[str, float], theirs: dict[str, float]) -> list[str]:
    """The figures (TTFT, ITL, TPOT) whose loadtest / AIPerf ratio is out of TOLERANCE."""
    off = []
    for name in ("ttft", "itl", "tpot"):
        for q, tolerance in TOLERANCE.items():
            a, b = ours[f"{name}_p{q}_s"], theirs[f"{name}_p{q}_s"]
            if not (b > 0 and abs(a / b - 1) <= tolerance):
                off.append(f"{name} p{q} {a / b if b else float('nan'):.3f}")
    return off


def table(ours: dict[str, float], theirs: dict[str, float]) -> str:
    pair = f"{'loadtest':>9} {'AIPerf':>9} {'ratio':>6}"
    head = f"{'figure':<40} {pair}   {pair}"
    lines = [f"{'':<40} {'p50 (ms)':>26}   {'p99 (ms)':>26}", head, "-" * len(head)]
    for name in FIGURES:
        cells = []
        for q in (50, 99):
            a, b = ours[f"{name}_p{q}_s"], theirs[f"{name}_p{q}_s"]
            cells.append(f"{a * 1000:>9.2f} {b * 1000:>9.2f} {a / b if b else float('nan'):>6.3f}")
        lines.append(f"{NAMES[name]:<40} " + "   ".join(cells))
    off = outside_tolerance(ours, theirs)
    lines.append(
        "within p50 +-5%, p99 +-10% (TTFT, ITL, TPOT): "
        + ("yes" if not off else "no: " + ", ".join(off))
    )
    lines.append(
        f"requests ok/failed: loadtest {ours['ok']:.0f}/{ours['failed']:.0f}, "
        f"AIPerf {theirs['ok']:.0f}/{theirs['failed']:.0f}; prompt tokens served (mean): "
        f"loadtest {ours['prompt_tokens_mean']:.1f}, AIPerf {theirs['prompt_tokens_mean']:.1f}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    if args.nice:
        try:
            os.nice(args.nice)  # AIPerf, started from here, inherits it
        except PermissionError:
            print(f"--nice {args.nice}: not permitted here; running at the usual priority")
    executable = aiperf_tool.ensure_aiperf(args.cache_dir)
    if args.install_only:
        print(f"AIPerf {aiperf_tool.VERSION}: {executable}")
        return 0
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="crosscheck-"))
    workdir.mkdir(parents=True, exist_ok=True)
    model = args.model or served_model(args.target)
    workload = make_workload(args, model)
    choice = TokenizerChoice(args.tokenizer) if args.tokenizer else TokenizerChoice()
    tokenizers = load_tokenizers(choice)
    text_seed = args.text_seed if args.text_seed is not None else int(time.time()) % 1_000_000
    ours_schedule = build_schedule(workload, tokenizers=tokenizers, text_seed=text_seed)
    theirs_schedule = build_schedule(workload, tokenizers=tokenizers, text_seed=text_seed + 1)
    same = [(r.at_s, r.prompt_tokens, r.max_tokens) for r in ours_schedule.requests]
    assert same == [(r.at_s, r.prompt_tokens, r.max_tokens) for r in theirs_schedule.requests]
    write_aiperf_schedule(theirs_schedule, workdir / "schedule.jsonl")
    tokenizer_dir = (
        resolve_directory(args.tokenizer)
        if args.tokenizer
        else placeholder_tokenizer(workdir / "placeholder-tokenizer")
    )
    print(
        f"{args.requests} requests, {args.arrival} {args.rate:g}/s ({ours_schedule.span_s:.1f} s), "
        f"prompts {args.prompt_tokens} tokens, {args.output_tokens} out, seed {args.seed}, "
        f"text seeds {text_seed}/{text_seed + 1}, model {model}, "
        f"{choice.describe([model])}; files in {workdir}",
        flush=True,
    )
    ours = figures(run_loadtest(args.target, ours_schedule, workdir / "loadtest"))
    records = aiperf_tool.run(
        executable,
        target=args.target,
        model=model,
        api="chat",
        tokenizer_dir=tokenizer_dir,
        schedule_file=workdir / "schedule.jsonl",
        artifacts=workdir / "aiperf",
        workdir=workdir,
        timeout_s=ours_schedule.span_s + 600,
    )
    theirs = figures(aiperf_tool.read_records(records))
    print(table(ours, theirs))
    print(f"wall time {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"loadtest": ours, "aiperf": theirs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
