#!/usr/bin/env python3
"""Write Turnout's sbatch scripts (replicas and gateway) from a few parameters.

    python3 deploy/slurm/render.py --model meta-llama/Llama-3.1-70B-Instruct \\
        --engine sglang --gpus-per-replica 16 --gpus-per-node 8 --replicas 2 --out slurm/

Standard library only, so it runs on a login node's python3. Every problem is one line
naming the option and what is allowed; the documentation is docs/scale-out.md.
"""

import argparse
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENGINES = ("sglang", "vllm")
DEFAULT_PORTS = {"sglang": 30000, "vllm": 8000}
# Port the SGLang head listens on for the other nodes' distributed init.
DIST_INIT_PORT = 20000


class RenderError(ValueError):
    """Parameters that make no deployment; the message names the option."""


@dataclass(frozen=True)
class Plan:
    model: str
    engine: str
    gpus_per_replica: int
    gpus_per_node: int
    replicas: int
    tp: int
    dp: int
    pp: int
    gpu_type: str
    port: int
    time: str
    cpus_per_node: int
    gateway_port: int
    strategy: str
    gateway_url_file: str
    health_timeout_s: int
    drain_s: int
    partition: str | None
    account: str | None
    engine_bin: str
    gateway_bin: str

    @property
    def nodes(self) -> int:
        return max(1, self.gpus_per_replica // self.gpus_per_node)


def plan_from(args: argparse.Namespace) -> Plan:
    """Check the parameters against each other; RenderError (one line) when they clash."""
    for option in ("gpus_per_replica", "gpus_per_node", "replicas", "dp", "pp", "port"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise RenderError(f"--{option.replace('_', '-')}: must be at least 1, not {value}")
    gpus = args.gpus_per_replica
    if gpus > args.gpus_per_node and gpus % args.gpus_per_node:
        raise RenderError(
            f"--gpus-per-replica {gpus}: a replica on several nodes takes whole nodes "
            f"(a multiple of --gpus-per-node {args.gpus_per_node})"
        )
    dp, pp = args.dp, args.pp
    tp = args.tp if args.tp is not None else gpus // (dp * pp)
    if tp < 1 or tp * dp * pp != gpus:
        raise RenderError(
            f"--tp {tp} x --dp {dp} x --pp {pp} = {tp * dp * pp} GPUs, but "
            f"--gpus-per-replica is {gpus}: the three must multiply to it"
        )
    nodes = max(1, gpus // args.gpus_per_node)
    if args.engine == "vllm" and nodes > 1:
        raise RenderError(
            f"--engine vllm: a replica on {nodes} nodes needs a Ray cluster, which these "
            "templates do not start; use --engine sglang, or at most --gpus-per-node GPUs "
            "per replica"
        )
    if not re.fullmatch(r"[A-Za-z0-9._/:-]+", args.model):
        raise RenderError(
            f"--model {args.model!r}: letters, digits and . _ / : - only (a Hugging Face "
            "name or a path)"
        )
    if re.search(r"[\"`\\\s]", args.gateway_url_file):
        raise RenderError("--gateway-url-file: no quotes, backquotes, backslashes or spaces")
    if not re.fullmatch(r"\d+(-\d+)?(:\d\d){0,2}", args.time):
        raise RenderError(f"--time {args.time!r}: Slurm's [days-]hours[:minutes[:seconds]]")
    return Plan(
        model=args.model,
        engine=args.engine,
        gpus_per_replica=gpus,
        gpus_per_node=min(gpus, args.gpus_per_node),
        replicas=args.replicas,
        tp=tp,
        dp=dp,
        pp=pp,
        gpu_type=args.gpu_type,
        port=args.port or DEFAULT_PORTS[args.engine],
        time=args.time,
        cpus_per_node=args.cpus_per_node,
        gateway_port=args.gateway_port,
        strategy=args.strategy,
        gateway_url_file=args.gateway_url_file,
        health_timeout_s=args.health_timeout,
        drain_s=args.drain,
        partition=args.partition,
        account=args.account,
        engine_bin=args.engine_bin,
        gateway_bin=args.gateway_bin,
    )


def engine_command(plan: Plan) -> str:
    """The engine's command line on each node; $HEAD, $PORT and $SLURM_NODEID are the
    script's (expanded by the shell srun starts on each node)."""
    model = plan.model  # checked: nothing a shell would expand
    if plan.engine == "sglang":
        # Flags: https://docs.sglang.io/advanced_features/server_arguments.html and
        # https://docs.sglang.io/references/multi_node_deployment/multi_node.html
        return (
            f"{plan.engine_bin} -m sglang.launch_server --model-path {model} "
            f"--host 0.0.0.0 --port $PORT --tp-size {plan.tp} --dp-size {plan.dp} "
            f"--pp-size {plan.pp} --nnodes {plan.nodes} --node-rank $SLURM_NODEID "
            f"--dist-init-addr $HEAD:{DIST_INIT_PORT} --enable-metrics"
        )
    # vLLM on one node: https://docs.vllm.ai/en/latest/serving/parallelism_scaling.html
    return (
        f"{plan.engine_bin} serve {model} --host 0.0.0.0 --port $PORT "
        f"--tensor-parallel-size {plan.tp} --data-parallel-size {plan.dp} "
        f"--pipeline-parallel-size {plan.pp}"
    )


def render(template: str, values: dict[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        key = match[1]
        if key not in values:
            raise RenderError(f"template placeholder @@{key}@@ has no value")
        return values[key]

    return re.sub(r"@@([A-Z_]+)@@", substitute, template)


def scripts(plan: Plan) -> dict[str, str]:
    """File name -> script text."""
    extra = []
    if plan.partition:
        extra.append(f"#SBATCH --partition={plan.partition}")
    if plan.account:
        extra.append(f"#SBATCH --account={plan.account}")
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", plan.model.split("/")[-1]).strip("-").lower()
    common = {
        "TIME": plan.time,
        "EXTRA_SBATCH": "\n".join(extra) or "# (no partition or account given)",
        "GATEWAY_URL_FILE": plan.gateway_url_file,
    }
    replica = {
        **common,
        "NAME": name or "replica",
        "MODEL": plan.model,
        "ENGINE": plan.engine,
        "REPLICAS": str(plan.replicas),
        "LAST_TASK": str(plan.replicas - 1),
        "NODES": str(plan.nodes),
        "GPUS_PER_NODE": str(plan.gpus_per_node),
        "GPU_TYPE": plan.gpu_type,
        "CPUS_PER_NODE": str(plan.cpus_per_node),
        "TP": str(plan.tp),
        "DP": str(plan.dp),
        "PP": str(plan.pp),
        "PORT": str(plan.port),
        "HEALTH_TIMEOUT_S": str(plan.health_timeout_s),
        "DRAIN_S": str(plan.drain_s),
        "ENGINE_COMMAND": engine_command(plan),
    }
    gateway = {
        **common,
        "GATEWAY_CPUS": "4",
        "GATEWAY_PORT": str(plan.gateway_port),
        "STRATEGY": shlex.quote(plan.strategy),
        "GATEWAY_COMMAND": plan.gateway_bin,
    }
    return {
        "replica.sbatch": render((HERE / "replica.sbatch.in").read_text(), replica),
        "gateway.sbatch": render((HERE / "gateway.sbatch.in").read_text(), gateway),
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", required=True, help="Hugging Face name or path of the model")
    p.add_argument("--engine", choices=ENGINES, default="sglang")
    p.add_argument("--gpus-per-replica", type=int, required=True)
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--replicas", type=int, default=1, help="replicas (a job array)")
    p.add_argument("--tp", type=int, help="tensor parallel (default: GPUs / (dp x pp))")
    p.add_argument("--dp", type=int, default=1, help="data parallel inside one replica")
    p.add_argument("--pp", type=int, default=1, help="pipeline parallel (across nodes)")
    p.add_argument("--gpu-type", default="h100", help="the gres type: --gres=gpu:TYPE:N")
    p.add_argument("--port", type=int, help="engine port (sglang 30000, vllm 8000)")
    p.add_argument("--time", default="24:00:00", help="job time limit")
    p.add_argument("--cpus-per-node", type=int, default=32)
    p.add_argument("--partition")
    p.add_argument("--account")
    p.add_argument("--gateway-port", type=int, default=8080)
    p.add_argument("--strategy", default="queue_depth")
    p.add_argument(
        "--gateway-url-file",
        default="$HOME/.turnout/gateway-url",
        help="shared file where the gateway job writes its URL for the replicas",
    )
    p.add_argument("--health-timeout", type=int, default=1800, help="seconds to load")
    p.add_argument("--drain", type=int, default=120, help="seconds to finish requests")
    p.add_argument("--engine-bin", default="python3", help="sglang: python; vllm: vllm")
    p.add_argument("--gateway-bin", default="gateway", help="the gateway command")
    p.add_argument("--out", type=Path, default=Path("."), help="directory to write to")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.engine == "vllm" and args.engine_bin == "python3":
        args.engine_bin = "vllm"
    try:
        plan = plan_from(args)
        written = scripts(plan)
    except RenderError as exc:
        print(f"render.py: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in written.items():
        path = args.out / name
        path.write_text(text)
        path.chmod(0o755)
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
