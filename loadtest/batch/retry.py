"""When a request is sent again, and after how long.

Sent again: HTTP 408, 409, 429 and 5xx (what the OpenAI Python SDK retries, in
openai-python's `_base_client.py` `_should_retry`), a connection that failed or broke, an
attempt that timed out, and a 200 whose body is not a JSON object. Waits: exponential backoff
with jitter (half fixed, half random, so a fleet of clients that failed together does not come
back together), or at least what the server's Retry-After says.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

RETRY_STATUSES = frozenset((408, 409, 429))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 8
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    attempt_timeout_s: float = 600.0  # one attempt, from sending to the whole answer
    deadline_s: float = 3600.0  # one request, all its attempts and waits, from its first send

    def retryable_status(self, status: int) -> bool:
        return status in RETRY_STATUSES or status >= 500

    def delay(self, attempts: int, retry_after_s: float | None, rng: random.Random) -> float:
        """Seconds to wait after `attempts` failed attempts (1 after the first)."""
        if retry_after_s is not None:
            # Never earlier than the server asked; a little later for some, to spread them.
            return retry_after_s + rng.uniform(0.0, min(1.0, 0.1 * retry_after_s))
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2.0 ** (attempts - 1))
        return ceiling / 2 + rng.uniform(0.0, ceiling / 2)


def parse_retry_after(value: bytes | None, now: float | None = None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP-date (RFC 9110 10.2.3)."""
    if value is None:
        return None
    text = value.decode("latin-1").strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds or seconds == float("inf"):  # NaN or infinite
        return None
    return max(seconds, 0.0)
