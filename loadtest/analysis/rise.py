"""Whether time to first token was still rising when a run ended: queues that grow.

Past what a fleet sustains, queues grow for as long as arrivals last, and so do the
latencies: a run's percentiles then depend on its length as much as on the routing. (On 32
replicas of chat-mixed at 0.95 of the flood-measured saturation, the oracle's TTFT p99 was
288 ms over 40,000 requests and 2.7 s over 120,000; the median of its last fifth of arrivals
was 3.9 times its second fifth's, where at 0.85 it was 1.09.)

`ttft_rise` compares the median TTFT of the last fifth of a run's requests to a model (in
the order they were sent) with that of the second fifth, and answers for the model that rises
most: a fleet saturates when its first model does, and the others' requests would hide it
(the reference fleet on chat-mixed at 0.95: Llama's median went from 537 ms to 2,604 ms, the
run's from 122 ms to 161 ms). The first fifth is left out, as queues are still filling there.
Requests with no first token count as infinitely slow, so a fleet that fails more and more is
rising too.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

from loadtest.drive.records import RequestRecord

# Rising: the last fifth's median above this many times the second's...
RISING = 1.5
# ...and later by this much (a few milliseconds more on a fleet answering in five is jitter,
# not a queue).
RISING_BY_S = 0.05
# Fewer requests than this in a fifth: no verdict (a median of a few says little).
MIN_PER_FIFTH = 50


@dataclass(frozen=True)
class Rise:
    """Median TTFT of the second and of the last fifth of a run's requests to `model`."""

    model: str
    second_s: float
    last_s: float

    @property
    def ratio(self) -> float:
        return self.last_s / self.second_s

    @property
    def rising(self) -> bool:
        return self.ratio > RISING and self.last_s - self.second_s > RISING_BY_S


def ttft_rise(records: Sequence[RequestRecord]) -> Rise | None:
    """The medians of the second and last fifths of `records` (by send time), of the model
    whose ratio is largest; None when no model has enough requests and a second fifth whose
    median is above zero and not a failure."""
    by_model: dict[str, list[RequestRecord]] = defaultdict(list)
    for record in records:
        by_model[record.model].append(record)
    rises = [rise for model, own in by_model.items() if (rise := _rise(model, own)) is not None]
    return max(rises, key=lambda rise: rise.ratio, default=None)


def _rise(model: str, records: list[RequestRecord]) -> Rise | None:
    ordered = sorted(records, key=lambda record: record.sent_s)
    size = len(ordered) // 5
    if size < MIN_PER_FIFTH:
        return None
    second = _median_ttft(ordered[size : 2 * size])
    if not 0 < second < float("inf"):
        return None
    return Rise(model, second, _median_ttft(ordered[-size:]))


def _median_ttft(records: Sequence[RequestRecord]) -> float:
    return median(r.ttft_s if r.ttft_s is not None else float("inf") for r in records)
