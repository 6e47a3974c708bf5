from prometheus_client.parser import text_string_to_metric_families

from gateway.telemetry import Telemetry
from gateway.upstream import Upstream
from routers import Metrics
from routers.pool import ReplicaPool


def samples(telemetry: Telemetry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = telemetry.render().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_requests_and_pool_gauges() -> None:
    now = [100.0]
    pool = ReplicaPool([Upstream("a", "http://a:1", ("m",)), Upstream("b", "http://b:1", ("m",))])
    telemetry = Telemetry(pool, clock=lambda: now[0])
    pool.acquire("a")
    pool.mark_down("b", "test")
    pool.record_metrics("a", Metrics(waiting=1, running=2), at=97.5)
    telemetry.observe_request("m", "a", "round_robin", 200, 0.01, 0.02)
    telemetry.observe_request("m", "a", "round_robin", 200, 0.01, 0.5)
    telemetry.observe_request("none", "none", "round_robin", 404, None, 0.001)
    telemetry.observe_retry("m")
    telemetry.observe_upstream_error("b", "connect")
    got = samples(telemetry)
    labels = (("model", "m"), ("replica", "a"), ("status", "200"), ("strategy", "round_robin"))
    assert got[("turnout_requests_total", labels)] == 2
    assert got[("turnout_request_duration_seconds_count", (("model", "m"), ("replica", "a")))] == 2
    assert (
        "turnout_request_duration_seconds_count",
        (("model", "none"), ("replica", "none")),
    ) not in got
    assert got[("turnout_in_flight", (("replica", "a"),))] == 1
    assert got[("turnout_replica_healthy", (("replica", "b"),))] == 0
    assert got[("turnout_replica_metrics_age_seconds", (("replica", "a"),))] == 2.5
    assert ("turnout_replica_metrics_age_seconds", (("replica", "b"),)) not in got
    assert got[("turnout_retries_total", (("model", "m"),))] == 1
    assert got[("turnout_upstream_errors_total", (("kind", "connect"), ("replica", "b")))] == 1


def test_registries_are_per_app() -> None:
    pool = ReplicaPool([Upstream("a", "http://a:1")])
    one, two = Telemetry(pool), Telemetry(pool)
    one.observe_retry("m")
    assert ("turnout_retries_total", (("model", "m"),)) not in samples(two)


def test_a_departed_replicas_series_are_shown_once_more_then_dropped() -> None:
    pool = ReplicaPool([Upstream("a", "http://a:1", ("m",)), Upstream("b", "http://b:1", ("m",))])
    telemetry = Telemetry(pool)
    for replica in ("a", "b"):
        telemetry.observe_request("m", replica, "round_robin", 200, 0.01, 0.02)
        telemetry.observe_upstream_error(replica, "connect")
    telemetry.observe_request("none", "none", "round_robin", 404, None, 0.001)
    pool.acquire("b")
    pool.remove("b")  # leaving, one request still in flight: still in the pool
    count_b = ("turnout_request_duration_seconds_count", (("model", "m"), ("replica", "b")))
    errors_b = ("turnout_upstream_errors_total", (("kind", "connect"), ("replica", "b")))
    assert samples(telemetry)[count_b] == 1
    telemetry.observe_request("m", "b", "round_robin", 200, 0.01, 0.02)
    pool.release("b")  # its last request: it leaves the pool
    last = samples(telemetry)
    assert last[count_b] == 2 and last[errors_b] == 1  # the final figures, shown once
    after = samples(telemetry)
    assert not [key for key in after if ("replica", "b") in key[1]]
    assert after[("turnout_request_duration_seconds_count", (("model", "m"), ("replica", "a")))]
    refused = (("model", "none"), ("replica", "none"), ("status", "404"))
    assert after[("turnout_requests_total", (*refused, ("strategy", "round_robin")))] == 1
    # Back under the same name: its counters start again from zero.
    pool.add(Upstream("b", "http://b:1", ("m",)))
    telemetry.observe_request("m", "b", "round_robin", 200, 0.01, 0.02)
    assert samples(telemetry)[count_b] == 1
