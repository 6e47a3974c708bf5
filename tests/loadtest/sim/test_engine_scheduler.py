"""The scheduler: queueing, chunked prefill, preemption, abort, finish reasons."""

import random

import pytest

from loadtest.sim.engine import RequestRejected
from loadtest.sim.types import SimRequest
from tests.loadtest.sim.helpers import (
    TINY_BLOCK,
    Clock,
    engine,
    free_blocks,
    request,
    tiny_pool,
    tokens,
)


def test_requests_queue_when_the_batch_is_full() -> None:
    model = engine(max_num_seqs=2, max_num_batched_tokens=256)
    model.add(request("a", 16, max_tokens=2), 0.0)
    model.add(request("b", 16, max_tokens=5), 0.0)
    model.add(request("c", 16, max_tokens=1), 0.0)
    clock = Clock(model)

    first = clock.step()
    assert first.first_token == ("a", "b")
    assert (model.stats().running, model.stats().waiting) == (2, 1)

    second = clock.step()
    assert second.emitted == ("a", "b")
    assert [done.id for done in second.finished] == ["a"]
    assert (model.stats().running, model.stats().waiting) == (1, 1)

    third = clock.step()  # a's seat is free: c is admitted and prefilled beside b's decode
    assert third.first_token == ("c",)
    assert set(third.emitted) == {"b", "c"}
    assert third.num_tokens == 1 + 16
    finished = [done for result in clock.run() for done in result.finished]
    assert sorted(done.id for done in finished) == ["a", "b", "c"]
    c = next(done for done in finished if done.id == "c")
    assert c.queue_time == pytest.approx(first.duration + second.duration)


def test_prefill_is_chunked_within_the_token_budget() -> None:
    model = engine(max_num_seqs=4, max_num_batched_tokens=64)
    model.add(request("long", 150, max_tokens=3), 0.0)
    clock = Clock(model)
    sizes = [clock.step().num_tokens for _ in range(3)]
    assert sizes == [64, 64, 22]
    assert [result.first_token for result in clock.results] == [(), (), ("long",)]

    # A decoding request takes one token of the budget; the prefill gets the rest.
    model.add(request("next", 100, max_tokens=1), clock.now)
    assert clock.step().num_tokens == 1 + 63


def test_prefill_takes_the_budget_left_after_decodes_in_admission_order() -> None:
    model = engine(max_num_seqs=8, max_num_batched_tokens=100)
    model.add(request("a", 60, max_tokens=2), 0.0)
    model.add(request("b", 60, max_tokens=2), 0.0)
    clock = Clock(model)
    first = clock.step()
    assert (first.num_tokens, first.first_token) == (100, ("a",))  # a whole, b's first 40
    second = clock.step()
    assert second.num_tokens == 1 + 20
    assert second.first_token == ("b",)
    assert [done.id for done in second.finished] == ["a"]


def test_blocks_running_out_preempt_the_latest_admitted_back_to_the_queue_front() -> None:
    # 4 blocks of 16 tokens; three 16-token prompts fill 3, a fourth request waits for a seat.
    model = engine(max_num_seqs=3, max_num_batched_tokens=256, num_blocks=4)
    for name in ("a", "b", "c", "d"):
        model.add(request(name, 16, max_tokens=20), 0.0)
    clock = Clock(model)
    assert clock.step().first_token == ("a", "b", "c")
    assert model.stats().used_blocks == 3

    # Each decode now writes token 17 and needs a second block: a takes the last free
    # one, b preempts c (the latest admitted), and nothing new is admitted this step.
    second = clock.step()
    assert second.emitted == ("a", "b")
    stats = model.stats()
    assert (stats.preemptions, stats.running, stats.waiting, stats.used_blocks) == (1, 2, 2, 4)

    # c went back to the FRONT of the queue: it runs again before d.
    results = clock.run()
    admitted = [rid for result in results for rid in result.emitted if rid in ("c", "d")]
    assert admitted[0] == "c"
    done = {d.id: d for result in results for d in result.finished}
    assert done["c"].preemptions >= 1 and done["c"].output_tokens == 20
    assert all(d.output_tokens == 20 for d in done.values())
    assert model.stats().used_blocks == 0


def test_abort_frees_blocks_at_once_and_counts_as_abort() -> None:
    model = engine(max_num_seqs=1, max_num_batched_tokens=256)
    model.add(request("running", 40, max_tokens=50), 0.0)
    model.add(request("queued", 16), 0.0)
    clock = Clock(model)
    clock.step()
    assert model.stats().used_blocks == 3
    assert model.abort("running", now=1.5)
    assert model.stats().used_blocks == 0
    assert model.abort("queued")
    assert not model.abort("running") and not model.abort("nobody")
    assert not model.has_work()
    stats = model.stats()
    assert (stats.running, stats.waiting, stats.finished["abort"]) == (0, 0, 2)
    records = model.step(clock.now).finished
    assert [(d.id, d.reason, d.output_tokens) for d in records] == [
        ("running", "abort", 1),
        ("queued", "abort", 0),
    ]
    assert records[0].finished == 1.5


def test_finish_reason_is_stop_at_the_natural_length_unless_ignore_eos() -> None:
    model = engine(max_num_batched_tokens=256)
    model.add(SimRequest("eos", tokens(10), max_tokens=50, stop_length=3), 0.0)
    model.add(SimRequest("cap", tokens(10), max_tokens=2, stop_length=3), 0.0)
    model.add(SimRequest("ign", tokens(10), max_tokens=5, ignore_eos=True, stop_length=3), 0.0)
    done = {d.id: d for result in Clock(model).run() for d in result.finished}
    assert (done["eos"].reason, done["eos"].output_tokens) == ("stop", 3)
    assert (done["cap"].reason, done["cap"].output_tokens) == ("length", 2)
    assert (done["ign"].reason, done["ign"].output_tokens) == ("length", 5)
    assert model.stats().finished == {"stop": 1, "length": 2, "abort": 0}
    assert model.stats().generation_tokens == 10
    assert model.stats().prompt_tokens == 30


def test_the_natural_stop_length_is_deterministic_from_the_seed() -> None:
    lengths = [SimRequest("x", [1], seed=seed).resolved_stop_length() for seed in range(200)]
    again = [SimRequest("y", [1], seed=seed).resolved_stop_length() for seed in range(200)]
    assert lengths == again
    assert all(8 <= length <= 2048 for length in lengths)
    assert len(set(lengths)) > 50
    assert 100 < sorted(lengths)[100] < 350  # median near 192


def test_impossible_requests_are_rejected_up_front() -> None:
    model = engine(num_blocks=8)
    with pytest.raises(RequestRejected, match="maximum context length"):
        model.add(SimRequest("long", tokens(4096)), 0.0)
    with pytest.raises(RequestRejected, match="maximum context length"):
        model.add(SimRequest("ask", tokens(100), max_tokens=4000), 0.0)
    with pytest.raises(RequestRejected, match="KV blocks"):
        model.add(SimRequest("big", tokens(120), max_tokens=20, ignore_eos=True), 0.0)
    model.add(request("ok", 16), 0.0)
    with pytest.raises(ValueError, match="already"):
        model.add(request("ok", 16), 0.0)


def test_token_counts_match_the_emitted_tokens_under_preemption_and_aborts() -> None:
    model = engine(max_num_seqs=6, max_num_batched_tokens=48, num_blocks=24)
    for index in range(30):
        model.add(request(f"r{index}", 8 + 13 * index % 90, max_tokens=5 + 7 * index % 60), 0.0)
    clock = Clock(model)
    counts: dict[str, int] = {}
    finished = {}
    for step in range(5_000):
        if not model.has_work():
            break
        if step % 97 == 50:
            model.abort(f"r{step % 30}")
        result = clock.step()
        for rid in result.emitted:
            counts[rid] = counts.get(rid, 0) + 1
        for done in result.finished:
            finished[done.id] = done
    assert len(finished) == 30 and not model.has_work()
    assert model.stats().preemptions > 0
    assert all(counts.get(rid, 0) == done.output_tokens for rid, done in finished.items())
    assert model.stats().used_blocks == 0


@pytest.mark.parametrize("seed", range(8))
def test_random_traffic_keeps_the_books_straight(seed: int) -> None:
    """Random arrivals and aborts on two engines sharing a pool, or one static engine.

    Elastic engines keep freed prefixes (a bound of 2 or 20 blocks, from the seed),
    which must hold, and the pool must account for every block they keep.
    """
    rng = random.Random(seed)
    pool = tiny_pool(48, "gpu") if seed % 2 else None
    config: dict[str, object] = {
        "max_num_seqs": 6,
        "max_num_batched_tokens": rng.choice([16, 64]),
    }
    if pool is None:
        config["num_blocks"] = 40
    else:
        config["max_cached_tokens"] = 32 if seed % 4 == 1 else 320
    engines = [engine(pool, **config) for _ in range(2 if pool else 1)]
    prefix = tokens(48, 777)
    clocks = [Clock(model) for model in engines]
    counts: dict[str, int] = {}
    finished: dict[str, int] = {}
    added = 0
    for tick in range(4_000):
        if added < 40 and rng.random() < 0.2:
            prompt = prefix[: rng.randrange(0, 48)] + tokens(rng.randrange(1, 90), 1000 * added)
            model = engines[added % len(engines)]
            model.add(request(f"q{added}", prompt, max_tokens=rng.randrange(1, 80)), tick)
            added += 1
        if rng.random() < 0.01:
            for model in engines:
                model.abort(f"q{rng.randrange(added + 1)}")
        for clock in clocks:
            result = clock.step()
            for rid in result.emitted:
                counts[rid] = counts.get(rid, 0) + 1
            for done in result.finished:
                assert done.id not in finished
                finished[done.id] = done.output_tokens
            stats = clock.model.stats()
            assert 0.0 <= stats.kv_usage <= 1.0 and stats.running <= 6
        if pool is not None:
            held = sum(model.kv.held_blocks() for model in engines)
            assert free_blocks(pool) + held == pool.total_bytes // TINY_BLOCK
            bound = int(config["max_cached_tokens"]) // 16  # type: ignore[call-overload]
            assert all(model.kv.kept_blocks() <= bound for model in engines)
        if added == 40 and not any(model.has_work() for model in engines):
            break
    assert len(finished) == 40
    assert all(counts.get(rid, 0) == out for rid, out in finished.items())
    assert all(model.stats().used_blocks == 0 for model in engines)
    assert sum(model.stats().preemptions for model in engines) > 0  # the hard path ran
    assert sum(model.stats().prefix_hits for model in engines) > 0  # prefixes were reused
