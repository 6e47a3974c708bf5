"""`vllm-sim fit`: which context window and how many concurrent users one replica can serve
under a TTFT target, found in virtual time.

For each context window C, every request fills it (a prompt of C - its output, then the
output): the worst case a deployment with that window must take. Outputs vary from half to
one and a half times the mean, so that users drift apart as real ones do instead of sending
in lock-step. N users each keep one request in flight (a closed loop, each user's next
request sent when the last one ends); the largest N whose TTFT p99 stays under the target is
found by doubling N, then halving the gap. The first request of each user is left out of the
percentiles: they all arrive at once, a burst a steady stream of users does not make.
"""

from dataclasses import dataclass

from loadtest.sim.engine import EngineConfig
from loadtest.sim.engines import VirtualReplica
from loadtest.sim.profiles import load_profile
from loadtest.sim.virtual import VirtualRequest, run_virtual
from routers.round_robin import RoundRobin


@dataclass(frozen=True, slots=True)
class Trial:
    """One closed-loop run: `users` in flight on one replica, requests filling `context`."""

    context: int
    users: int
    ttft_p99: float  # seconds, the first request of each user left out
    tpot_p50: float  # seconds between output tokens, median over requests
    tokens_per_s: float  # output tokens per second, all users together
    refused: int  # requests the replica could not take (longer than its KV or window)


@dataclass(frozen=True, slots=True)
class Fit:
    """The largest number of users meeting the target at one context (None: not even one)."""

    context: int
    kv_windows: float  # full windows the KV cache holds at once
    best: Trial | None
    first_miss: Trial | None  # the smallest number of users found to miss the target


def trial(
    profile: str, config: EngineConfig, context: int, users: int, output: int, per_user: int
) -> Trial:
    """Play `users` closed-loop streams of `per_user` requests each, every one `context` long."""
    model = load_profile(profile).model
    requests = []
    for index in range(users * per_user):
        # Golden-ratio steps spread outputs evenly over [0.5, 1.5) x the mean, seed-free.
        length = max(1, round(output * (0.5 + (index * 0.6180339887) % 1.0)))
        prompt = max(1, context - length)
        requests.append(
            VirtualRequest(
                time=0.0,
                model=model,
                # A token unique to the request first: no prefix is shared between requests.
                prompt_token_ids=[10_000_000 + index, *range(prompt - 1)],
                max_tokens=length,
                ignore_eos=True,
                id=str(index),
            )
        )
    replica = VirtualReplica("replica-0", profile, config)
    result = run_virtual([replica], RoundRobin(), requests, concurrency=users)
    done = [r for r in result.records if r.status == "ok" and r.ttft is not None]
    steady = [r for r in done if int(r.id) >= users] or done
    ttfts = sorted(r.ttft for r in steady if r.ttft is not None)
    tpots = sorted(r.mean_itl for r in steady if r.mean_itl is not None)
    tokens = sum(r.output_tokens for r in done)
    return Trial(
        context=context,
        users=users,
        ttft_p99=_quantile(ttfts, 0.99),
        tpot_p50=_quantile(tpots, 0.5),
        tokens_per_s=tokens / result.sim_seconds if result.sim_seconds > 0 else 0.0,
        refused=len(result.records) - len(done),
    )


def fit(
    profile: str,
    config: EngineConfig,
    context: int,
    *,
    ttft_p99: float,
    output: int,
    max_users: int,
    per_user: int,
) -> Fit:
    """The largest number of users (at most `max_users`) whose TTFT p99 is under `ttft_p99`
    with requests filling `context`; TTFT is taken to grow with the number of users."""
    loaded = load_profile(profile)
    capacity = config.num_blocks * config.block_size if config.num_blocks else None
    kv_tokens = capacity or loaded.kv_tokens(config.gpu_memory_utilization)
    if loaded.engine != "vllm":
        kv_tokens = capacity or config.max_num_seqs * (loaded.slot_context or 0)
    windows = kv_tokens / context
    if context > loaded.max_model_len or (loaded.engine == "vllm" and windows < 1):
        return Fit(context, windows, None, None)

    def ok(t: Trial) -> bool:
        return t.refused == 0 and t.ttft_p99 <= ttft_p99

    best: Trial | None = None
    miss: Trial | None = None
    users = 1
    while users <= max_users:
        attempt = trial(profile, config, context, users, output, per_user)
        if not ok(attempt):
            miss = attempt
            break
        best = attempt
        users *= 2
    if best is None or miss is None:
        return Fit(context, windows, best, miss)
    low, high = best.users, miss.users  # low meets the target, high does not
    while high - low > 1:
        middle = (low + high) // 2
        attempt = trial(profile, config, context, middle, output, per_user)
        if ok(attempt):
            best, low = attempt, middle
        else:
            miss, high = attempt, middle
    return Fit(context, windows, best, miss)


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("inf")
    return values[min(len(values) - 1, int(q * (len(values) - 1) + 0.5))]
