"""Request limits: per client key (rate and concurrency) and for the whole gateway.

A key's rate is a token bucket (`rate` requests per second, `burst` at once), its
concurrency a count of requests open; the global cap counts every open relayed request.
All O(1) per request: a dict lookup, a few float operations, two counters. State is kept
by key name, so a key file reload that keeps a name keeps its bucket and its count.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.errors import RateLimited
from gateway.keys import ClientKey


@dataclass(slots=True)
class KeyState:
    tokens: float
    updated: float
    open: int = 0


class Limits:
    def __init__(
        self, global_cap: int | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.global_cap = global_cap
        self.open = 0
        self._states: dict[str, KeyState] = {}
        self._clock = clock

    def state(self, name: str) -> KeyState | None:
        return self._states.get(name)

    def admit(self, key: ClientKey) -> KeyState:
        """Count one request of `key` in, or raise RateLimited (429, Retry-After)."""
        if self.global_cap is not None and self.open >= self.global_cap:
            raise RateLimited(
                f"the gateway is serving its limit of {self.global_cap} requests; retry shortly",
                limit="global",
                retry_after=1,
            )
        state = self._states.get(key.name)
        if state is None:
            state = self._states[key.name] = KeyState(key.burst, self._clock())
        if key.concurrency is not None and state.open >= key.concurrency:
            raise RateLimited(
                f"key {key.name!r} has {state.open} requests open, its limit; "
                "retry when one has finished",
                limit="concurrency",
                retry_after=1,
            )
        if key.rate is not None:
            now = self._clock()
            state.tokens = min(key.burst, state.tokens + (now - state.updated) * key.rate)
            state.updated = now
            if state.tokens < 1.0:
                wait = math.ceil((1.0 - state.tokens) / key.rate)
                raise RateLimited(
                    f"key {key.name!r} is over its rate of {key.rate:g} requests per second; "
                    f"retry in {wait} s",
                    limit="rate",
                    retry_after=wait,
                )
            state.tokens -= 1.0
        state.open += 1
        self.open += 1
        return state

    def release(self, state: KeyState) -> None:
        state.open -= 1
        self.open -= 1
