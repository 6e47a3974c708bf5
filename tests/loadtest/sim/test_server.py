"""`vllm-sim serve` end to end, through the real openai SDK and raw HTTP."""

import subprocess
import time
from collections.abc import Callable, Iterator

import httpx
import openai
import orjson
import pytest

from tests.loadtest.sim.serving import (
    MODEL,
    SdkFactory,
    gauge,
    scrape,
    sdk_clients,
    serve_argv,
    wait_until,
)
from tests.procs import Proc, free_port, start


@pytest.fixture(scope="module")
def sim() -> Iterator[Proc]:
    """One tiny replica shared by the read-only tests of this module."""
    port = free_port()
    proc = start([arg.format(port=port) for arg in serve_argv()], port=port)
    yield proc
    proc.stop()


@pytest.fixture
def sdk() -> Iterator[SdkFactory]:
    yield from sdk_clients()


def test_chat_completion_has_vllms_shape(sim: Proc, sdk: SdkFactory) -> None:
    reply = sdk(sim).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello there"}], max_tokens=7
    )
    assert reply.id.startswith("chatcmpl-")
    assert reply.object == "chat.completion"
    assert reply.model == MODEL
    assert reply.system_fingerprint is None
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage is not None
    assert reply.usage.completion_tokens <= 7
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert reply.choices[0].message.content


def test_ignore_eos_generates_exactly_max_tokens(sim: Proc, sdk: SdkFactory) -> None:
    reply = sdk(sim).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count"}],
        max_completion_tokens=40,
        extra_body={"ignore_eos": True},
    )
    assert reply.usage is not None and reply.usage.completion_tokens == 40
    assert reply.choices[0].finish_reason == "length"


def test_chat_stream_role_first_usage_last(sim: Proc, sdk: SdkFactory) -> None:
    stream = sdk(sim).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Stream please"}],
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert {c.id for c in chunks} == {chunks[0].id} and chunks[0].id.startswith("chatcmpl-")
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 12
    finals = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finals[-1] == "length" and set(finals[:-1]) == {None}
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None and usage_chunk.usage.completion_tokens == 12


def test_raw_stream_ends_with_done(sim: Proc) -> None:
    body = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 5, "stream": True}
    with httpx.stream("POST", sim.url + "/v1/completions", json=body, timeout=10) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    chunks = [orjson.loads(line.removeprefix("data: ")) for line in events[:-1]]
    assert all(c["object"] == "text_completion" and c["id"].startswith("cmpl-") for c in chunks)
    assert "usage" not in chunks[-1]  # no include_usage: no usage chunk


def test_completion_non_streaming(sim: Proc, sdk: SdkFactory) -> None:
    reply = sdk(sim).completions.create(
        model=MODEL, prompt="The sea is", max_tokens=9, extra_body={"ignore_eos": True}
    )
    assert reply.id.startswith("cmpl-") and reply.object == "text_completion"
    assert reply.usage is not None and reply.usage.completion_tokens == 9
    assert len(reply.choices[0].text.split()) == 9


def test_completion_stream_via_sdk(sim: Proc, sdk: SdkFactory) -> None:
    stream = sdk(sim).completions.create(
        model=MODEL,
        prompt=[1, 2, 3, 4],
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 4
    assert len("".join(c.choices[0].text for c in chunks if c.choices).split()) == 6


def test_models_health_ping_version(sim: Proc, sdk: SdkFactory) -> None:
    models = sdk(sim).models.list().data
    assert [m.id for m in models] == [MODEL]
    card = httpx.get(sim.url + "/v1/models").json()["data"][0]
    assert card["owned_by"] == "vllm" and card["max_model_len"] == 4096
    assert httpx.get(sim.url + "/health").status_code == 200
    assert httpx.get(sim.url + "/ping").status_code == 200
    version = httpx.get(sim.url + "/version").json()
    assert version["time_scale"] == 1.0 and version["version"]


CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"


def chat(**fields: object) -> dict[str, object]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **fields}


BAD_REQUESTS = [
    (CHAT, b"{not json", 400, None),
    (CHAT, b"[1, 2]", 400, None),
    (CHAT, {"messages": [{"role": "user", "content": "x"}]}, 400, "model"),
    (CHAT, chat(model="gpt-9"), 404, "model"),
    (CHAT, chat(messages="hello"), 400, "messages"),
    (CHAT, chat(messages=[]), 400, "messages"),
    (CHAT, chat(messages=[{"content": "x"}]), 400, "messages"),
    (CHAT, chat(messages=[{"role": "user", "content": 1}]), 400, "messages"),
    (CHAT, chat(n=2), 400, "n"),
    (CHAT, chat(max_tokens=0), 400, "max_tokens"),
    (CHAT, chat(max_tokens="9"), 400, "max_tokens"),
    (CHAT, chat(max_tokens=5000), 400, "max_tokens"),
    (CHAT, chat(stream_options={"include_usage": True}), 400, "stream_options"),
    (COMPLETIONS, {"model": MODEL, "prompt": "word " * 5000}, 400, "messages"),
    (COMPLETIONS, {"model": MODEL}, 400, "prompt"),
    (COMPLETIONS, {"model": MODEL, "prompt": ["a", "b"]}, 400, "prompt"),
    (COMPLETIONS, {"model": MODEL, "prompt": "x", "stream": "yes"}, 400, "stream"),
]


@pytest.mark.parametrize(("path", "body", "status", "param"), BAD_REQUESTS)
def test_bad_requests_get_openai_errors(
    sim: Proc, path: str, body: object, status: int, param: str | None
) -> None:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    response = httpx.post(sim.url + path, content=content, timeout=5)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == status and error["param"] == param and error["message"]
    assert httpx.get(sim.url + "/health").status_code == 200  # still serving


def test_sdk_raises_on_unknown_model_and_n(sim: Proc, sdk: SdkFactory) -> None:
    with pytest.raises(openai.NotFoundError):
        sdk(sim).chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError):
        sdk(sim).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}], n=3
        )


def test_unknown_path_and_method(sim: Proc) -> None:
    assert httpx.get(sim.url + "/v2/nothing").json()["error"]["code"] == 404
    assert httpx.get(sim.url + "/v1/chat/completions").status_code == 405


def test_disconnect_mid_stream_frees_seat_and_blocks(
    spawn: Callable[..., Proc], sdk: SdkFactory
) -> None:
    # 2,000 tokens at time scale 5: about 6 s of streaming, far longer than the test waits.
    proc = spawn(serve_argv("--time-scale", "5"))
    stream = sdk(proc).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "A very long answer"}],
        max_tokens=2000,
        stream=True,
        extra_body={"ignore_eos": True},
    )
    for _, _chunk in zip(range(5), stream, strict=False):
        pass
    assert gauge(proc.url, "vllm:num_requests_running") == 1
    assert gauge(proc.url, "vllm:kv_cache_usage_perc") > 0
    stream.close()
    assert wait_until(lambda: gauge(proc.url, "vllm:num_requests_running") == 0, timeout=2.0)
    assert gauge(proc.url, "vllm:kv_cache_usage_perc") == 0
    abort = 'vllm:request_success_total{engine="0",finished_reason="abort",model_name="sim-tiny"}'
    assert scrape(proc.url)[abort] == 1


def test_disconnect_while_queued_leaves_the_queue(
    spawn: Callable[..., Proc], sdk: SdkFactory
) -> None:
    proc = spawn(serve_argv("--time-scale", "5", "--max-num-seqs", "1"))
    openai_client = sdk(proc)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "long"}]}
    first = openai_client.chat.completions.create(
        **body, max_tokens=2000, stream=True, extra_body={"ignore_eos": True}
    )
    next(iter(first))
    with httpx.Client(timeout=0.5) as raw, pytest.raises(httpx.ReadTimeout):
        raw.post(proc.url + "/v1/chat/completions", json={**body, "max_tokens": 10})
    # The timed-out request left while waiting: the queue is empty again.
    assert wait_until(lambda: gauge(proc.url, "vllm:num_requests_waiting") == 0, timeout=2.0)
    assert gauge(proc.url, "vllm:num_requests_running") == 1
    first.close()


def test_time_scale_stretches_every_step(spawn: Callable[..., Proc], sdk: SdkFactory) -> None:
    proc = spawn(serve_argv("--time-scale", "25", "--log-level", "info"))
    assert httpx.get(proc.url + "/version").json()["time_scale"] == 25.0
    assert '"time_scale": 25.0' in proc.output() or '"time_scale":25.0' in proc.output()
    started = time.monotonic()
    sdk(proc).completions.create(
        model=MODEL, prompt="x", max_tokens=30, extra_body={"ignore_eos": True}
    )
    # 30 steps of at least 0.6 simulated ms each (tiny profile), times 25.
    assert time.monotonic() - started >= 30 * 0.0006 * 25
    labels = f'engine="0",model_name="{MODEL}"'
    e2e = scrape(proc.url)[f"vllm:e2e_request_latency_seconds_sum{{{labels}}}"]
    assert e2e >= 30 * 0.0006 * 25  # reported in wall-clock seconds


def test_elastic_replica_reports_its_pool(spawn: Callable[..., Proc], sdk: SdkFactory) -> None:
    proc = spawn(serve_argv("--kv-mode", "elastic", "--kv-pool", "gpu7", "--no-prefix-caching"))
    version = httpx.get(proc.url + "/version").json()
    assert (version["kv_mode"], version["kv_pool"], version["prefix_caching"]) == (
        "elastic",
        "gpu7",
        False,
    )
    reply = sdk(proc).completions.create(model=MODEL, prompt="x", max_tokens=4)
    assert reply.usage is not None and reply.usage.completion_tokens >= 1
    assert gauge(proc.url, "vllm:kv_cache_usage_perc") == 0  # blocks went back to the pool


def test_elastic_replica_with_prefix_caching_reuses_a_finished_prompt(
    spawn: Callable[..., Proc], sdk: SdkFactory
) -> None:
    flags = ("--kv-mode", "elastic", "--kv-pool", "gpu7", "--max-cached-tokens", "320")
    proc = spawn(serve_argv(*flags))
    version = httpx.get(proc.url + "/version").json()
    assert (version["prefix_caching"], version["max_cached_tokens"]) == (True, 320)
    prompt = " ".join(f"word{i}" for i in range(200))
    for _ in range(2):  # one after the other: the second finds the first's freed blocks kept
        sdk(proc).completions.create(model=MODEL, prompt=prompt, max_tokens=2)
    hits = gauge(proc.url, "vllm:prefix_cache_hits_total")
    assert hits >= 16  # at least one 16-token block
    assert gauge(proc.url, "vllm:kv_cache_usage_perc") == 0  # kept blocks count as free


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--kv-mode", "shared"], "--kv-mode must be static or elastic"),
        (["--profile", "gpt-5"], "unknown profile 'gpt-5'"),
        (["--max-cached-tokens", "-2"], "--max-cached-tokens"),
    ],
)
def test_bad_serve_flags_stop_with_one_line(flags: list[str], message: str) -> None:
    argv = [arg.format(port=free_port()) for arg in serve_argv(*flags)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2 and message in result.stderr
