"""Prompts have their exact length under a real tokenizer, chat template included."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from loadtest.sim.hf_tokenizer import load_tokenizer
from loadtest.sim.tokenizer import encode_chat
from loadtest.workload import Arrival, LengthDist, SharedPrefix, Workload
from loadtest.workload.counting import TokenizerChoice, TokenizerError, load_tokenizers
from loadtest.workload.fitting import fit_words
from loadtest.workload.schedule import build_schedule
from tests.loadtest.tokenizer_dir import build_tokenizer


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tokenizer(tmp_path_factory.mktemp("tok") / "tiny-bpe")


def workload(**changes: object) -> Workload:
    base = Workload(
        name="t",
        description="",
        models=(("a", 0.5), ("b", 0.5)),
        prompt_tokens=LengthDist("lognormal", median=300, spread=0.8, low=24, high=3000),
        output_tokens=LengthDist("fixed", value=8),
        arrival=Arrival("poisson", rate=50.0),
        requests=300,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_every_prompt_counts_its_target_under_the_tokenizer(tok_dir: Path, api: str) -> None:
    tokenizers = load_tokenizers(TokenizerChoice(str(tok_dir)))
    tok = load_tokenizer(str(tok_dir))
    schedule = build_schedule(workload(api=api), seed=3, tokenizers=tokenizers)
    counted = [
        len(tok.chat([{"role": "user", "content": schedule.prompt(r)}]))
        if api == "chat"
        else len(tok.completion(schedule.prompt(r)))
        for r in schedule.requests
    ]
    assert counted == [r.prompt_tokens for r in schedule.requests]
    # The tokenizer really is not the approximate one: words are often two tokens or more.
    words = [len(schedule.prompt(r).split()) for r in schedule.requests]
    assert np.mean(words) < 0.8 * np.mean(counted)
    # The same seed and tokenizer give the same prompts.
    again = build_schedule(workload(api=api), seed=3, tokenizers=tokenizers)
    assert [again.prompt(r) for r in again.requests] == [
        schedule.prompt(r) for r in schedule.requests
    ]


def test_shared_prefixes_stay_identical_and_have_their_length(tok_dir: Path) -> None:
    tokenizers = load_tokenizers(TokenizerChoice(str(tok_dir)))
    tok = load_tokenizer(str(tok_dir))
    shared = SharedPrefix(fraction=0.6, tokens=200, groups=2)
    schedule = build_schedule(workload(shared_prefix=shared), seed=5, tokenizers=tokenizers)
    members = [r for r in schedule.requests if r.prefix_group >= 0]
    overhead = len(tok.chat([{"role": "user", "content": ""}]))
    for group in (0, 1):
        texts = [schedule.prompt(r) for r in members if r.prefix_group == group]
        words = {r.prefix_words for r in members if r.prefix_group == group}
        assert len(words) == 1  # one prefix per group (and model tokenizer)
        prefix = schedule.prefixes[group][: words.pop() * 4].rstrip(" ")
        assert all(text.startswith(prefix) for text in texts)
        alone = len(tok.chat([{"role": "user", "content": prefix}])) - overhead
        assert abs(alone - 200) <= 2
    for r in schedule.requests:
        assert len(tok.chat([{"role": "user", "content": schedule.prompt(r)}])) == r.prompt_tokens


def test_each_model_is_sized_with_its_own_tokenizer(tok_dir: Path) -> None:
    """Model a: the BPE tokenizer; model b: none given, so the approximate one."""
    tokenizers = load_tokenizers(TokenizerChoice(None, (("a", str(tok_dir)),)))
    tok = load_tokenizer(str(tok_dir))
    schedule = build_schedule(workload(), seed=1, tokenizers=tokenizers)
    assert {r.model for r in schedule.requests} == {"a", "b"}
    for r in schedule.requests:
        messages = [{"role": "user", "content": schedule.prompt(r)}]
        counted = len(tok.chat(messages)) if r.model == "a" else len(encode_chat(messages))
        assert counted == r.prompt_tokens
    assert "a: " in schedule.tokenizers.describe(["a", "b"])


def test_fit_words_finds_exact_counts_or_the_closest() -> None:
    """Words cost 1 or 2 tokens, fillers 1; the template costs 5."""
    costs = [1 + (k % 3 == 2) for k in range(200)]

    def render(i: int, words: int, fillers: int) -> str:
        return f"{words} {fillers}"

    def count(texts: list[str]) -> list[int]:
        out = []
        for text in texts:
            words, fillers = map(int, text.split())
            out.append(5 + sum(costs[:words]) + fillers)
        return out

    words, fillers = fit_words(count, render, [6, 40, 101, 3], max_words=[200] * 4)  # type: ignore[arg-type]
    got = count([render(0, int(w), int(f)) for w, f in zip(words, fillers, strict=True)])
    assert got[:3] == [6, 40, 101]
    assert got[3] == 6  # below the template's own 5 plus one word: the closest
    assert (words[3], fillers[3]) == (1, 0)


def test_tokenizer_options() -> None:
    choice = TokenizerChoice.parse(["/tok/default", "m1=/tok/one", "org/m2=org/m2"])
    assert choice.name_for("m1") == "/tok/one"
    assert choice.name_for("org/m2") == "org/m2"
    assert choice.name_for("other") == "/tok/default"
    merged = TokenizerChoice.parse(["m1=x"]).or_else(TokenizerChoice.of({"m1": "y", "m3": "z"}))
    assert (merged.name_for("m1"), merged.name_for("m3"), merged.name_for("m4")) == ("x", "z", None)
    assert not TokenizerChoice.parse([]).given
    for bad in (["a", "b"], ["=x"], ["m="]):
        with pytest.raises(TokenizerError, match="--tokenizer"):
            TokenizerChoice.parse(bad)
