"""How long a replica normally takes to its first byte, and the deadline that follows from it.

A fixed first-byte timeout (GATEWAY_FIRST_BYTE_TIMEOUT, 300 s by default) has to allow for
the longest legitimate wait, so on its own it lets a request sit for minutes on a replica
that has stopped answering. Each replica therefore keeps a running estimate of its time to
first byte, one for streams (the first token) and one for whole answers, the way TCP
estimates its retransmission timeout (RFC 6298: a smoothed mean and a smoothed mean
deviation, O(1) per sample). A request that may still go elsewhere waits at most

    min(first_byte_timeout, max(FLOOR_S, FACTOR * (mean + 4 * deviation)))

and is then retried on another replica; nothing has reached its client yet. The last
attempt of a request always gets the full first_byte_timeout, so a request that is slow
everywhere is served late rather than not at all.
"""

from dataclasses import dataclass

# Samples before the estimate is trusted; until then the fixed timeout applies.
MIN_SAMPLES = 8
# Generous on purpose: a retry costs the replica's work so far (the prefill).
FACTOR = 4.0
# Never cut sooner than this: scheduling noise, a brief GC pause, a burst's queue.
FLOOR_S = 1.0
_ALPHA = 0.125  # RFC 6298's gains
_BETA = 0.25


@dataclass(slots=True)
class FirstByteEstimate:
    mean: float = 0.0
    deviation: float = 0.0
    samples: int = 0

    def observe(self, seconds: float) -> None:
        if self.samples == 0:
            self.mean = seconds
            self.deviation = seconds / 2
        else:
            self.deviation += _BETA * (abs(self.mean - seconds) - self.deviation)
            self.mean += _ALPHA * (seconds - self.mean)
        self.samples += 1

    def deadline(self, cap: float) -> float:
        """Seconds to wait for the first byte before trying elsewhere (at most `cap`)."""
        if self.samples < MIN_SAMPLES:
            return cap
        return min(cap, max(FLOOR_S, FACTOR * (self.mean + 4 * self.deviation)))
