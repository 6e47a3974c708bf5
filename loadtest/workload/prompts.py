"""The words prompts are made of, and the marker each request's own text starts with.

Text is built from three-letter English words plus a space: four characters, which is one token
for the simulator's approximate tokenizer (about four characters per token) and, for most real
BPE tokenizers, one or two. Every request's own text starts with a marker made of its index,
so that no two requests share more than their intended prefix. How many words make a prompt of
a given length under a given tokenizer: loadtest/workload/fitting.py.
"""

from __future__ import annotations

import numpy as np

CHARS_PER_TOKEN = 4

_WORDS_TEXT = (
    "the and for are but not you all any can had her was one our out day get has him his how man "
    "new now old see two way who boy did its let put say she too use art bad bag bed big box bus "
    "cat cup cut dog ear eat egg end eye far fat few fit fly fun gas god gun guy hat hot ice ink "
    "job key kid law lay leg lie lot low map mix mud net oil own pay pen pet pie pig pin pop pot "
    "raw red rid row run sad sea set sit six sky son sun tax tea ten tie tip toe top toy try war "
    "web wet win yes yet zoo act add age ago aid aim air ask ate bar bat bay bee bit bow buy cab "
    "cap car cow cry dad dry due dug dye era fan fee fig fix fog fox gap gym hen hip hit hop hug "
    "hut jam jar jaw jet joy kit lab lap lip log mad mat mom nap nod nut oak oar odd off opt owl "
    "pad pan paw pea pit pub rag ram rat ray rib rim rob rod rug sap saw sew shy sip sob sow spa "
    "spy sum tab tag tan tap tar tin ton tub tug van vet vow wax wig wit woe yak yam zip"
)
WORD_UNITS = np.array([word + " " for word in _WORDS_TEXT.split()])
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def words(rng: np.random.Generator, tokens: int) -> str:
    """`tokens` random four-character words, each ending in a space."""
    if tokens <= 0:
        return ""
    return "".join(WORD_UNITS[rng.integers(0, len(WORD_UNITS), size=tokens)].tolist())


def marker(index: int) -> str:
    """Two tokens that only request `index` starts its own text with (unique below 26**6)."""
    letters = []
    for _ in range(6):
        index, digit = divmod(index, 26)
        letters.append(_LETTERS[digit])
    return f"{''.join(letters[:3])} {''.join(letters[3:])} "
