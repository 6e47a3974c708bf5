"""A replica that hangs (SIGSTOP: it still accepts connections, never answers) while another
is killed, under streaming load: no request waits more than one health interval plus its
normal time to first token, none that could be served is lost, and in-flight counts return
to 0. Only processes this test started are signalled; the hung one is resumed before it is
stopped."""

import asyncio
import os
import signal
import statistics
from collections.abc import Callable
from pathlib import Path

from tests.gateway.conftest import admin_replicas, replicas_file, wait_until
from tests.gateway.load import drive
from tests.loadtest.sim.serving import MODEL, serve_argv
from tests.procs import Proc

HEALTH_INTERVAL = 1.0
# Wide: this machine is shared; the failure this guards against is a wait of tens of seconds.
SLACK_S = 2.0


def test_hung_and_killed_replicas_strand_no_request(
    spawn: Callable[..., Proc], gateway: Callable[..., Proc], tmp_path: Path
) -> None:
    sims = [spawn(serve_argv("--seed", str(i))) for i in range(3)]
    entries = [{"url": s.url, "name": f"sim{i}"} for i, s in enumerate(sims)]
    gw = gateway(
        replicas_file=replicas_file(tmp_path, entries),
        strategy="queue_depth",
        health_interval=HEALTH_INTERVAL,
        poll_interval=0.5,
        idle_timeout=5,
    )
    killed, hung = sims[0], sims[1]
    stopped = False

    def kill() -> None:
        os.killpg(killed.popen.pid, signal.SIGKILL)

    def hang() -> None:
        nonlocal stopped
        os.killpg(hung.popen.pid, signal.SIGSTOP)
        stopped = True

    try:
        outcomes = asyncio.run(
            drive(
                gw.url,
                model=MODEL,
                rate=20,
                duration=9.0,
                max_tokens=24,
                client_timeout=30.0,
                events=[(3.0, kill), (5.0, hang)],
            )
        )
        in_flight_after_load = sum(r["in_flight"] for r in admin_replicas(gw)["replicas"])
    finally:
        if stopped:
            os.killpg(hung.popen.pid, signal.SIGCONT)

    before = [o for o in outcomes if o.sent_at < 2.5]
    assert before and all(o.ok for o in before), [o for o in before if not o.ok]
    normal = statistics.quantiles([o.ttfb for o in before if o.ttfb is not None], n=100)[98]
    bound = HEALTH_INTERVAL + normal + SLACK_S
    # A stream already flowing on a replica when it died or hung cannot go elsewhere: it
    # ends with an SSE error event. Every other request is served, in time.
    cut = [o for o in outcomes if o.status == 200 and o.sse_error]
    served = [o for o in outcomes if o.ok]
    assert len(served) + len(cut) == len(outcomes), [o for o in outcomes if not o.ok]
    assert all(o.replica in ("sim0", "sim1") for o in cut)
    assert len(cut) < len(outcomes) / 4
    late = [o for o in served if o.ttfb is None or o.ttfb > bound]
    assert not late, (bound, late)
    assert any(o.replica == "sim2" for o in served if o.sent_at > 5.0)
    # The gateway's books balance: nothing counted in flight once every stream ended.
    assert in_flight_after_load == 0
    wait_until(lambda: not admin_replicas(gw)["replicas"][1]["healthy"], 5, "sim1 ejected")
