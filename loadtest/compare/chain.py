"""The chain of environments from A to B that changes one thing at a time.

Both ends are played as fleets in virtual time (loadtest.playback.fleets), so a chain exists
when A and B run the same replicas (count, model, profile, GPU) and differ only in settings
a fleet can change one by one: each replica's engine settings (prefix caching, KV mode,
kept prefixes, memory share, KV blocks, batch limits, ...) and the gateway's strategy and
poll interval. The order is fixed (prefix caching, KV mode, ... routing last), so an
attribution is reproducible; with interactions, another order could share the total out
differently, and the docs say so. Each link between the ends is named after a known
environment that plays identically (baseline-noprefix, managed-rr) or after what changed.
"""

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from loadtest.environments.catalog import Environment, EnvironmentsError
from loadtest.playback.fleets import VirtualFleet, virtual_fleet
from loadtest.sim.engine import EngineConfig
from loadtest.sim.layout import seats

# Engine settings in the order they are changed, with what they are called.
ENGINE_KNOBS: tuple[tuple[str, str], ...] = (
    ("prefix_caching", "prefix caching"),
    ("kv_mode", "KV mode"),
    ("max_cached_tokens", "kept prefix tokens (KVCACHED_MAX_CACHED_TOKENS)"),
    ("gpu_memory_utilization", "GPU memory share"),
    ("num_blocks", "KV blocks"),
    ("max_num_seqs", "max_num_seqs"),
    ("max_num_batched_tokens", "max_num_batched_tokens"),
    ("block_size", "block size"),
)
POLL = "GATEWAY_POLL_INTERVAL"


class CannotAttribute(ValueError):
    """A and B differ in a way the chain cannot take one step at a time; the message says how."""


@dataclass(frozen=True)
class Link:
    """One environment of the chain; `change` is what it changed from the link before."""

    name: str
    fleet: VirtualFleet
    change: str | None = None
    # The setting it changed ("prefix caching", "routing", ...).
    knob: str | None = None


def derive_chain(
    a: Environment, b: Environment, known: Mapping[str, Environment] | None = None
) -> list[Link]:
    """The links from A to B, A and B included; CannotAttribute says why there is none."""
    fleets = []
    for env in (a, b):
        try:
            fleets.append(virtual_fleet(env))
        except EnvironmentsError as exc:
            # The chain plays only in virtual time: advice to leave it does not apply.
            reason = str(exc).removesuffix("; drop --virtual").removesuffix(", or drop --virtual")
            raise CannotAttribute(f"cannot attribute in virtual time: {reason}") from None
    start, end = fleets
    _same_replicas(a.name, start, b.name, end)
    _same_gateway(a, b)
    named: dict[str, VirtualFleet] | None = None  # known fleets, looked at once a link needs a name
    links = [Link(a.name, start)]
    current = start
    for knob, (apply, describe) in _knobs().items():
        changed = apply(current, end)
        if _plays_alike(changed, current):
            continue
        change = f"{knob} {describe(current)} -> {describe(changed)}"
        current = changed
        if named is None:
            named = _known_fleets(known or {}, (a.name, b.name), len(start.replicas))
        name = next((n for n, fleet in named.items() if _plays_alike(fleet, changed)), None)
        name = name or f"{links[-1].name} + {knob} {describe(changed)}"
        links.append(Link(name, changed, change, knob))
    if not _plays_alike(current, end):
        raise CannotAttribute(
            f"cannot attribute: {a.name} and {b.name} differ in how their replicas share KV "
            "pools, which no single setting changes"
        )
    if len(links) == 1:
        raise CannotAttribute(
            f"nothing to attribute: {a.name} and {b.name} play alike in virtual time "
            "(same replicas, settings, strategy and poll interval)"
        )
    links[-1] = replace(links[-1], name=b.name, fleet=end)
    return links


def _same_replicas(a: str, start: VirtualFleet, b: str, end: VirtualFleet) -> None:
    if len(start.replicas) != len(end.replicas):
        raise CannotAttribute(
            f"cannot attribute: {a} runs {len(start.replicas)} replicas and {b} "
            f"{len(end.replicas)}; a chain changes the settings of the same replicas, not "
            "the size or layout of a fleet"
        )
    for index, (one, other) in enumerate(zip(start.replicas, end.replicas, strict=True)):
        if (one.profile, one.model) != (other.profile, other.model):
            raise CannotAttribute(
                f"cannot attribute: replica {index} serves {one.model} ({one.profile}) in {a} "
                f"and {other.model} ({other.profile}) in {b}; a chain changes settings, not "
                "models or hardware"
            )
        if one.gpu != other.gpu:
            raise CannotAttribute(
                f"cannot attribute: replica {index} shares a GPU in one of {a} and {b} and "
                "not in the other: the layouts differ"
            )


def _same_gateway(a: Environment, b: Environment) -> None:
    """Gateway settings other than the poll interval are not played in virtual time."""
    keys = {k for k in {*a.gateway_env, *b.gateway_env} if k != POLL}
    differ = sorted(k for k in keys if a.gateway_env.get(k) != b.gateway_env.get(k))
    if differ:
        raise CannotAttribute(
            f"cannot attribute: {a.name} and {b.name} differ in gateway setting(s) "
            f"{', '.join(differ)}, which virtual time does not play"
        )


Apply = Callable[[VirtualFleet, VirtualFleet], VirtualFleet]
Describe = Callable[[VirtualFleet], str]


def _knobs() -> dict[str, tuple[Apply, Describe]]:
    """Every setting the chain can change, in order: engine settings, then the gateway's."""
    names = dict(ENGINE_KNOBS)
    order = [*names, *(f.name for f in dataclasses.fields(EngineConfig) if f.name not in names)]
    knobs: dict[str, tuple[Apply, Describe]] = {
        names.get(field, field.replace("_", " ")): (_engine_apply(field), _engine_describe(field))
        for field in order
    }
    knobs["routing"] = (
        lambda cur, end: replace(cur, strategy=end.strategy),
        lambda fleet: fleet.strategy,
    )
    knobs["poll interval"] = (
        lambda cur, end: replace(cur, poll_interval=end.poll_interval),
        lambda fleet: f"{fleet.poll_interval:g}s",
    )
    return knobs


def _engine_apply(field: str) -> Apply:
    def apply(current: VirtualFleet, end: VirtualFleet) -> VirtualFleet:
        replicas = []
        for mine, theirs in zip(current.replicas, end.replicas, strict=True):
            config = replace(mine.config, **{field: getattr(theirs.config, field)})
            # Elastic replicas draw from a pool, static ones from none: the mode brings it.
            pool = theirs.pool if field == "kv_mode" else mine.pool
            replicas.append(replace(mine, config=config, pool=pool))
        return replace(current, replicas=tuple(replicas))

    return apply


def _engine_describe(field: str) -> Describe:
    def describe(fleet: VirtualFleet) -> str:
        values = [getattr(replica.config, field) for replica in fleet.replicas]
        texts = list(dict.fromkeys(_text(value) for value in values))
        return texts[0] if len(texts) == 1 else "per replica " + "/".join(texts)

    return describe


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "the profile's"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _plays_alike(one: VirtualFleet, other: VirtualFleet) -> bool:
    return (one.replicas, one.strategy, one.poll_interval) == (
        other.replicas,
        other.strategy,
        other.poll_interval,
    )


def _known_fleets(
    known: Mapping[str, Environment], exclude: tuple[str, ...], replicas: int
) -> dict[str, VirtualFleet]:
    """The known local environments of `replicas` replicas (but A and B) as fleets, to name
    links after."""
    fleets = {}
    for name, env in known.items():
        size = len(seats(env.fleet)) if env.fleet is not None else len(env.replicas)
        if name in exclude or env.url is not None or size != replicas:
            continue
        try:
            fleets[name] = virtual_fleet(env)
        except EnvironmentsError:
            continue
    return fleets
