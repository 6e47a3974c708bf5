"""Hand-built replica views for strategy tests."""

from routers import Metrics, ReplicaView


def view(
    id: str,
    *,
    in_flight: int = 0,
    waiting: float | None = None,
    running: float = 0,
    dispatched: int = 0,
    finished: int = 0,
    stale: bool = False,
) -> ReplicaView:
    metrics = None if waiting is None else Metrics(waiting=waiting, running=running)
    return ReplicaView(
        id=id,
        url=f"http://127.0.0.1/{id}",
        models=("m",),
        healthy=True,
        in_flight=in_flight,
        dispatched_since_scrape=dispatched,
        finished_since_scrape=finished,
        metrics=metrics,
        metrics_age=None if metrics is None else 0.1,
        metrics_stale=stale or metrics is None,
    )
