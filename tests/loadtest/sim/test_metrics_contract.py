"""Contract: the gateway's own /metrics parser reads the simulator's page (both name eras)."""

from collections.abc import Callable

import httpx
import pytest

from tests.loadtest.sim.serving import MODEL, gauge, serve_argv, wait_until
from tests.procs import Proc

# turnout/engine_metrics.py comes from the gw-poller branch; until it is merged this skips.
scrape = pytest.importorskip("turnout.engine_metrics")


@pytest.mark.parametrize("legacy", [False, True])
def test_gateway_parser_reads_simulator_metrics(spawn: Callable[..., Proc], legacy: bool) -> None:
    flags = ["--max-num-seqs", "1", "--time-scale", "5"] + (["--legacy-metrics"] if legacy else [])
    proc = spawn(serve_argv(*flags))
    body = {"model": MODEL, "prompt": "go", "max_tokens": 2000, "ignore_eos": True, "stream": True}
    with httpx.Client(timeout=10) as client:
        streams = [client.stream("POST", proc.url + "/v1/completions", json=body) for _ in range(3)]
        for stream in streams:
            stream.__enter__()
        try:
            name = "vllm:num_requests_waiting"
            assert wait_until(lambda: gauge(proc.url, name, legacy=legacy) == 2)
            metrics = scrape.parse_metrics(httpx.get(proc.url + "/metrics").text)
        finally:
            for stream in streams:
                stream.__exit__(None, None, None)
    assert metrics is not None
    assert (metrics.waiting, metrics.running) == (2, 1)
    assert metrics.kv_usage is not None and 0 < metrics.kv_usage < 1
