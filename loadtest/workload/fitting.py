"""Prompt text of an exact token count under a model's tokenizer, chat template included.

A prompt is its shared prefix (if any), a two-word marker unique to the request, then words
of the schedule's corpus, then possibly a few one-token filler words. Under the simulator's
approximate tokenizer every word is one token, so the count is arithmetic. Under a real
tokenizer a word is one token or more. Byte-level BPE and SentencePiece tokenizers split text
at spaces before merging, so a word preceded by a space costs the same tokens wherever it
stands: the words and fillers each request needs are predicted from those costs and the count
of its prefix and marker, then verified by counting the whole prompt (batched). Where the
prediction misses (a tokenizer that merges across words), a few rounds of the secant method
on words -> tokens find it. What cannot be matched exactly (a target below the template's own
overhead) keeps the closest count found.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from loadtest.sim.hf_tokenizer import HfTokenizer
from loadtest.sim.tokenizer import chat_overhead_tokens
from loadtest.workload.counting import Tokenizers
from loadtest.workload.model import Api
from loadtest.workload.prompts import CHARS_PER_TOKEN, marker

# One token in the BPE and SentencePiece vocabularies of common models (" a" / "▁a").
FILLER = "a "
MARKER_WORDS = 2
_ROUNDS = 16
_FILLER_TRIES = 3

# (texts) -> token counts, the whole request as the server counts it.
Count = Callable[[Sequence[str]], list[int]]
# (request position, words, fillers) -> that request's text.
Render = Callable[[int, int, int], str]


def compose(prefix: str, index: int, corpus: str, offset: int, words: int, fillers: int = 0) -> str:
    """The text of a prompt: prefix, marker, corpus words from `offset`, fillers.

    `words` counts the marker's two words; fewer than two cut the marker. No trailing
    space, so that templates that trim their content (Llama 3's) change nothing."""
    start = offset * CHARS_PER_TOKEN
    body = corpus[start : start + max(words - MARKER_WORDS, 0) * CHARS_PER_TOKEN]
    own = (marker(index) + body)[: words * CHARS_PER_TOKEN]
    return (prefix + own + FILLER * fillers).rstrip(" ")


def fit_words(
    count: Count,
    render: Render,
    targets: Sequence[int],
    *,
    max_words: Sequence[int],
    fillers: bool = True,
    start: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per request, the (words, fillers) whose rendering counts `targets[i]` tokens.

    Words go from 1 to max_words[i]; `start` is a predicted answer, tried first. Returns two
    int arrays; where no exact answer exists the closest count found (ties: the shorter)."""
    n = len(targets)
    target = np.asarray(targets, dtype=np.int64)
    top = np.maximum(np.asarray(max_words, dtype=np.int64), 1)
    if start is not None:
        words = np.clip(np.asarray(start[0], dtype=np.int64), 1, top)
        fill = np.asarray(start[1], dtype=np.int64).copy() if fillers else np.zeros(n, np.int64)
    else:
        words = np.minimum(top, np.full(n, MARKER_WORDS, dtype=np.int64))
        fill = np.zeros(n, dtype=np.int64)
    # Bracket: the most words known to count below the target, the fewest known above.
    low = np.zeros(n, dtype=np.int64)
    high = top + 1
    prev_words = np.full(n, -1, dtype=np.int64)
    prev_count = np.zeros(n, dtype=np.int64)
    best = np.full(n, -1, dtype=np.int64)
    best_err = np.full(n, np.iinfo(np.int64).max)
    best_words, best_fill = words.copy(), fill.copy()
    filler_tries = np.zeros(n, dtype=np.int64)
    todo = np.arange(n)
    for round_ in range(_ROUNDS):
        if todo.size == 0:
            break
        counts = count([render(int(i), int(words[i]), int(fill[i])) for i in todo])
        still = []
        for i, c in zip(todo.tolist(), counts, strict=True):
            err = abs(c - target[i])
            if err < best_err[i] or (err == best_err[i] and c < best[i]):
                best[i], best_err[i] = c, err
                best_words[i], best_fill[i] = words[i], fill[i]
            if err == 0:
                continue
            if round_ == 0 and fill[i]:
                # The prediction missed: search on words alone from there.
                fill[i] = 0
                still.append(i)
                continue
            nxt = _next(i, c, words, fill, target, low, high, top, prev_words, prev_count)
            if nxt is not None:
                prev_words[i], prev_count[i] = words[i], c
                words[i] = nxt
                still.append(i)
                continue
            # One more word overshoots (or the corpus ends): pad with one-token fillers.
            more = max(int(fill[i] + target[i] - c), 0)
            if fillers and filler_tries[i] < _FILLER_TRIES and more != fill[i]:
                filler_tries[i] += 1
                fill[i] = more
                still.append(i)
        todo = np.asarray(still, dtype=np.int64)
    return best_words, best_fill


def _next(
    i: int,
    c: int,
    words: np.ndarray,
    fill: np.ndarray,
    target: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    top: np.ndarray,
    prev_words: np.ndarray,
    prev_count: np.ndarray,
) -> int | None:
    """The next word count to try for request i (secant step inside the bracket), or None
    when the bracket is closed and only fillers can help."""
    if fill[i]:
        return None
    w = int(words[i])
    if c < target[i]:
        low[i] = max(int(low[i]), w)
    else:
        high[i] = min(int(high[i]), w)
    if high[i] - low[i] <= 1:
        # Words at `low` count under the target, one more over it: stay at `low`.
        if c > target[i] and low[i] >= 1:
            words[i] = low[i]
            fill[i] = 0
            return int(low[i]) if w != low[i] else None
        return None
    slope = 1.0
    if prev_words[i] >= 0 and prev_words[i] != w:
        slope = max((c - prev_count[i]) / (w - prev_words[i]), 0.25)
    step = round((target[i] - c) / slope)
    if step == 0:
        step = 1 if c < target[i] else -1
    return int(min(max(w + step, low[i] + 1), high[i] - 1, top[i]))


def fit_lengths(
    *,
    api: Api,
    tokenizers: Tokenizers | None,
    models: Sequence[str],
    targets: np.ndarray,
    groups: np.ndarray,
    offsets: np.ndarray,
    prefixes: Sequence[str],
    prefix_tokens: int,
    corpus: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per request: prefix words, own words (marker included) and fillers, so that each
    prompt counts `targets[i]` tokens, template included, under its model's tokenizer."""
    n = len(targets)
    in_group = groups >= 0
    prefix_words = np.where(in_group, prefix_tokens, 0).astype(np.int64)
    overhead = chat_overhead_tokens() if api == "chat" else 0
    text_words = np.maximum(targets - prefix_words - overhead, 1).astype(np.int64)
    fillers = np.zeros(n, dtype=np.int64)
    if tokenizers is None or not tokenizers.choice.given:
        return prefix_words, text_words, fillers
    by_tokenizer: dict[str, list[int]] = {}
    for i, model in enumerate(models):
        name = tokenizers.choice.name_for(model)
        if name is not None:
            by_tokenizer.setdefault(name, []).append(i)
    units = _units(corpus)
    for name, members in by_tokenizer.items():
        tokenizer = tokenizers.loaded[name]

        def count(texts: Sequence[str], tokenizer: HfTokenizer = tokenizer) -> list[int]:
            return tokenizer.count(texts, api)

        rows = np.asarray(members, dtype=np.int64)
        cut = _fit_prefixes(count, prefixes, prefix_tokens, sorted(set(groups[rows]) - {-1}))
        for i in rows[in_group[rows]]:
            prefix_words[i] = cut[int(groups[i])]

        def render(j: int, words: int, extra: int, rows: np.ndarray = rows) -> str:
            i = int(rows[j])
            group = int(groups[i])
            prefix = prefixes[group][: prefix_words[i] * CHARS_PER_TOKEN] if group >= 0 else ""
            return compose(prefix, i, corpus, int(offsets[i]), words, extra)

        top = len(units) - offsets[rows] + MARKER_WORDS
        base = np.asarray(count([render(j, MARKER_WORDS, 0) for j in range(len(rows))]))
        start = _predict(tokenizer, units, targets[rows] - base, offsets[rows], top)
        words, extra = fit_words(
            count, render, targets[rows].tolist(), max_words=top.tolist(), start=start
        )
        text_words[rows], fillers[rows] = words, extra
    return prefix_words, text_words, fillers


def _units(corpus: str) -> np.ndarray:
    """The corpus as an array of its four-character words."""
    step = CHARS_PER_TOKEN
    return np.array([corpus[k : k + step] for k in range(0, len(corpus) - step + 1, step)])


def _predict(
    tokenizer: HfTokenizer,
    units: np.ndarray,
    budget: np.ndarray,
    offsets: np.ndarray,
    top: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(words, fillers) that spend `budget` tokens after each request's prefix and marker,
    from what each word costs after a space: as many corpus words as fit, then fillers."""
    distinct, inverse = np.unique(units, return_inverse=True)
    anchor = "the"
    probes = [anchor, anchor + " " + FILLER.strip()]
    probes += [f"{anchor} {unit.strip()}" for unit in distinct.tolist()]
    counts = tokenizer.count(probes, "completions")
    filler_cost = max(counts[1] - counts[0], 1)
    costs = np.maximum(np.asarray(counts[2:]) - counts[0], 1)[inverse]
    spent = np.concatenate(([0], np.cumsum(costs)))
    budget = np.maximum(budget, 0)
    body = np.searchsorted(spent, spent[offsets] + budget, side="right") - 1 - offsets
    body = np.clip(body, 0, top - MARKER_WORDS)
    rest = budget - (spent[offsets + body] - spent[offsets])
    return body + MARKER_WORDS, np.maximum(rest // filler_cost, 0)


def _fit_prefixes(
    count: Count, prefixes: Sequence[str], tokens: int, groups: Sequence[int]
) -> dict[int, int]:
    """Words of each shared prefix that make it `tokens` tokens on its own (the template
    counted out), so that prefix and own text split the prompt as the workload says."""
    if not groups:
        return {}
    overhead = count([""])[0]
    words, _ = fit_words(
        count,
        lambda j, w, _f: prefixes[groups[j]][: w * CHARS_PER_TOKEN].rstrip(" "),
        [tokens + overhead] * len(groups),
        max_words=[tokens] * len(groups),
        fillers=False,
    )
    return {g: int(w) for g, w in zip(groups, words, strict=True)}
