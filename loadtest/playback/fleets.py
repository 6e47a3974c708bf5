"""An environment as a fleet in virtual time: its replicas' engines, its strategy, its poll.

Local fleets play in both clocks: a named fleet (`fleet: baseline`) is its layout deployed
that way (loadtest.sim.layout); a replica list (`replicas: [{model, profile, args}]`) takes
the engine settings of each replica's `vllm-sim serve` arguments. URL environments run only
live.
"""

import argparse
import inspect
from dataclasses import dataclass

import routers
from gateway.settings import GatewaySettings
from loadtest.environments.catalog import Environment, EnvironmentsError
from loadtest.sim.engine import EngineConfig
from loadtest.sim.engines import VirtualReplica, build_engines, deployed_replicas
from loadtest.sim.profiles import DEFAULT_GPU_MEMORY_UTILIZATION, UnknownProfile
from routers import Strategy


@dataclass(frozen=True)
class VirtualFleet:
    """What `run_virtual` needs to play an environment."""

    name: str
    replicas: tuple[VirtualReplica, ...]
    strategy: str
    poll_interval: float

    def new_strategy(self, seed: int) -> Strategy:
        """A fresh strategy object, seeded when it takes a seed (same seed, same run; the
        two sides of a comparison get different seeds, so that an A/A comparison's sides
        differ by chance as two live runs would)."""
        factory = routers.registry.factory(self.strategy)
        accepts_seed = "seed" in inspect.signature(factory).parameters
        return routers.load(self.strategy, **({"seed": seed} if accepts_seed else {}))


class LiveOnly(EnvironmentsError):
    """A sound environment that exists only live (a URL, a server's face, faults)."""


def virtual_fleet(env: Environment) -> VirtualFleet:
    """`env` in virtual time; LiveOnly when it can only run live, EnvironmentsError when it
    is broken (an unknown profile, engine settings that cannot work)."""
    if env.url is not None:
        raise LiveOnly(
            f"environment {env.name!r} is a URL ({env.url}): it runs only live, not in "
            "virtual time; give a local fleet, or drop --virtual"
        )
    share = env.gpu_memory_utilization or DEFAULT_GPU_MEMORY_UTILIZATION
    if env.fleet is not None:
        replicas = tuple(deployed_replicas(env.fleet, share, env.profiles))
    else:
        replicas = tuple(
            _replica(
                env.name,
                f"replica-{index}",
                spec.alias or spec.model,
                spec.profile,
                spec.args,
                share,
            )
            for index, spec in enumerate(env.replicas)
        )
    default_poll = GatewaySettings.model_fields["poll_interval"].default
    for index, replica in enumerate(replicas):
        try:
            build_engines([replica])
        except (UnknownProfile, ValueError) as exc:
            raise EnvironmentsError(f"environment {env.name!r}: replica {index}: {exc}") from None
    poll = float(env.gateway_env.get("GATEWAY_POLL_INTERVAL", default_poll))
    return VirtualFleet(env.name, replicas, env.strategy, poll)


def _parser() -> argparse.ArgumentParser:
    # The `vllm-sim serve` options that shape the engine; the rest are refused below.
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    parser.add_argument("--max-num-seqs", type=int, default=256)
    parser.add_argument("--max-num-batched-tokens", type=int, default=8192)
    parser.add_argument("--kv-blocks", type=int)
    parser.add_argument("--prefix-caching", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--kv-mode", choices=("static", "elastic"), default="static")
    parser.add_argument("--kv-pool")  # pools are per process: nothing to share
    parser.add_argument("--gpu-memory-utilization", type=float)
    parser.add_argument("--seed", type=int)
    # What server it presents as changes its HTTP face, not its engine (the profile's):
    # virtual time plays the engine, so these are accepted and do nothing.
    parser.add_argument("--present-as")
    parser.add_argument("--max-queue", type=int)
    parser.add_argument("--metrics", action=argparse.BooleanOptionalAction)
    parser.add_argument("--health-delay", type=float)
    return parser


def _parse(env: str, args: tuple[str, ...]) -> argparse.Namespace:
    try:
        known, unknown = _parser().parse_known_args(list(args))
    except argparse.ArgumentError as exc:
        raise EnvironmentsError(f"environment {env!r}: replica args: {exc}") from None
    if unknown:
        raise LiveOnly(
            f"environment {env!r}: replica args {' '.join(unknown)} cannot be played in "
            "virtual time (faults only exist live); drop --virtual"
        )
    return known


def _replica(
    env: str, name: str, model: str, profile: str, args: tuple[str, ...], share: float
) -> VirtualReplica:
    known = _parse(env, args)
    config = EngineConfig(
        max_num_seqs=known.max_num_seqs,
        max_num_batched_tokens=max(known.max_num_batched_tokens, known.max_num_seqs),
        num_blocks=known.kv_blocks,
        prefix_caching=known.prefix_caching,
        kv_mode=known.kv_mode,
        gpu_memory_utilization=known.gpu_memory_utilization or share,
    )
    # Each `vllm-sim serve` is its own process, so an elastic replica has a pool of its own.
    pool = name if known.kv_mode == "elastic" else None
    return VirtualReplica(name=name, profile=profile, config=config, pool=pool, model=model)
