"""Open-loop streaming load against a gateway, recording each request's fate: for the hang
test, the chaos test and bench/chaos.py, bench/soak.py.

Every request is a chat completion stream; its Outcome says when it was sent, its status,
time to first byte, whether the stream ended with `[DONE]` or with an SSE error event, and
which replica served it. Rates and durations are bounded by the caller; every request has
a client timeout, so a run always ends.
"""

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

ERROR_EVENT = b'data: {"error"'
DONE = b"data: [DONE]"


@dataclass
class Outcome:
    sent_at: float  # seconds since the run started
    status: int = 0
    ttfb: float | None = None
    duration: float = 0.0
    done: bool = False  # the stream ended with [DONE]
    sse_error: bool = False  # the stream ended with an error event
    replica: str = ""
    failure: str = ""  # a client-side exception, by class name
    aborted: bool = False  # the client left on purpose

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.done and not self.sse_error


def chat(model: str, max_tokens: int) -> dict[str, object]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "Tell me about railway turnouts."}],
        "max_tokens": max_tokens,
        "stream": True,
        "ignore_eos": True,
    }


async def one_stream(
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, object],
    outcome: Outcome,
    client_timeout: float,
    abort_after: int | None = None,
) -> None:
    """Send one stream and fill `outcome`; leave after `abort_after` chunks if given."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(client_timeout):
            async with session.post(url + "/v1/chat/completions", json=body) as resp:
                outcome.status = resp.status
                outcome.replica = resp.headers.get("x-turnout-replica", "")
                tail = b""
                chunks = 0
                async for chunk in resp.content.iter_any():
                    if outcome.ttfb is None:
                        outcome.ttfb = time.perf_counter() - started
                    chunks += 1
                    tail = (tail + chunk)[-4096:]
                    if abort_after is not None and chunks >= abort_after:
                        outcome.aborted = True
                        break
                outcome.done = DONE in tail
                outcome.sse_error = ERROR_EVENT in tail
    except Exception as exc:
        outcome.failure = type(exc).__name__
    outcome.duration = time.perf_counter() - started


Hook = Callable[[], Awaitable[None] | None]


async def drive(
    url: str,
    *,
    model: str,
    rate: float,
    duration: float,
    max_tokens: int = 32,
    client_timeout: float = 60.0,
    events: list[tuple[float, Hook]] | None = None,
    abort_fraction: float = 0.0,
    seed: int = 0,
) -> list[Outcome]:
    """Send `rate` streams per second (Poisson) for `duration` seconds; run each of
    `events` (seconds from the start, hook) on time; wait for every stream to end."""
    rng = random.Random(seed)
    pending = sorted(events or [], key=lambda event: event[0])
    outcomes: list[Outcome] = []
    tasks: list[asyncio.Task[None]] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        next_at = 0.0
        while next_at < duration:
            now = time.perf_counter() - start
            while pending and pending[0][0] <= now:
                result = pending.pop(0)[1]()
                if result is not None:
                    await result
            if now < next_at:
                await asyncio.sleep(min(next_at - now, 0.05))
                continue
            outcome = Outcome(sent_at=now)
            outcomes.append(outcome)
            abort = rng.randint(1, max_tokens) if rng.random() < abort_fraction else None
            body = chat(model, max_tokens)
            tasks.append(
                asyncio.create_task(one_stream(session, url, body, outcome, client_timeout, abort))
            )
            next_at += rng.expovariate(rate)
        for _, hook in pending:
            result = hook()
            if result is not None:
                await result
        await asyncio.gather(*tasks)
    return outcomes
