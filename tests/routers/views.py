"""Hand-built replica views and requests for strategy tests."""

from routers import Metrics, ReplicaView, RouteRequest
from routers.prompt import chained_hashes


def view(
    id: str,
    *,
    in_flight: int = 0,
    waiting: float | None = None,
    running: float = 0,
    dispatched: int = 0,
    finished: int = 0,
    stale: bool = False,
    in_flight_at_scrape: int | None = None,
    awaiting: int = 0,
    awaiting_tokens: int = 0,
    kv_usage: float | None = None,
    step_ends_at: float = 0.0,
) -> ReplicaView:
    """A candidate. `waiting` None: never scraped. `in_flight_at_scrape` None: as many
    as the scrape shows (running + waiting), i.e. no other sender."""
    metrics = (
        None if waiting is None else Metrics(waiting=waiting, running=running, kv_usage=kv_usage)
    )
    if in_flight_at_scrape is None:
        in_flight_at_scrape = 0 if waiting is None else int(waiting + running)
    return ReplicaView(
        id=id,
        url=f"http://127.0.0.1/{id}",
        models=("m",),
        healthy=True,
        in_flight=in_flight,
        dispatched_since_scrape=dispatched,
        finished_since_scrape=finished,
        in_flight_at_scrape=in_flight_at_scrape,
        awaiting_first_byte=awaiting,
        awaiting_prompt_tokens=awaiting_tokens,
        metrics=metrics,
        metrics_age=None if metrics is None else 0.1,
        metrics_stale=stale or metrics is None,
        step_ends_at=step_ends_at,
    )


def prompt(
    *blocks: int,
    tokens: int | None = None,
    id: str = "",
    session: str | None = None,
    now: float | None = None,
) -> RouteRequest:
    """A request whose prompt is the given blocks of 16 tokens (each an integer naming the
    block's text), hashed as the gateway hashes text: chained over everything before."""
    return RouteRequest(
        model="m",
        prompt_tokens_estimate=16 * len(blocks) if tokens is None else tokens,
        request_id=id,
        prefix_hashes=chained_hashes(block.to_bytes(8, "little") * 8 for block in blocks),
        session=session,
        now=now,
    )
