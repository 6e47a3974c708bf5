"""A deterministic approximate tokenizer, and pseudo-word output text from a seed.

Counting: text is split into words (letters and digits), single punctuation
marks, and nothing for whitespace; a word is then cut into pieces of at most
six characters, one token each. English text comes out at about 4 characters
per token (3.8 on this project's Markdown), a little more tokens than Llama 3's
or Qwen 2.5's BPE would give, which errs on the side of longer prompts. A
token's id is the CRC-32 of its piece modulo the vocabulary size, so the same
text gives the same ids in every process and texts that share a prefix share
their leading ids (what prefix caching needs).

Output: the `index`-th output token of a request is a word (with its leading
space) picked by hashing (seed, index), so a stream can be regenerated from any
point and the same seed always says the same thing.
"""

import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

VOCAB_SIZE = 128_256  # Llama 3's
PIECE_CHARS = 6
_PIECES = re.compile(r"\w+|[^\w\s]")

# Chat template cost, as in Llama 3's: a header of four tokens per message, then
# the generation prompt's header, and the begin-of-text token.
MESSAGE_OVERHEAD_TOKENS = 4
CHAT_PROMPT_TOKENS = 5

_WORD_LIST = (
    "the of and to in is that for it as was with be by on not he this are or his "
    "from at which but have an they you were her she there been one all we their "
    "has would when if so no will more about can said up out what some into them "
    "time only could new these two may first then do any like my now over such our "
    "man me even most made after also did many before must through back years where "
    "much your way well down should because each just those people how too little "
    "state good very make world still own see men work long get here between both "
    "life being under never day same another know while last might us great old year "
    "off come since against go came right used take three engine token cache batch "
    "replica queue latency request stream model prefix block memory router kernel"
)
OUTPUT_WORDS = tuple(_WORD_LIST.split())


def token_id(piece: str) -> int:
    return zlib.crc32(piece.encode()) % VOCAB_SIZE


def encode(text: str) -> list[int]:
    """Token ids of `text` (see the module docstring for the rules)."""
    ids: list[int] = []
    for match in _PIECES.finditer(text):
        piece = match.group()
        if len(piece) <= PIECE_CHARS:
            ids.append(token_id(piece))
        else:
            ids.extend(
                token_id(piece[start : start + PIECE_CHARS])
                for start in range(0, len(piece), PIECE_CHARS)
            )
    return ids


def count_tokens(text: str) -> int:
    return len(encode(text))


def encode_chat(messages: Iterable[Mapping[str, object]]) -> list[int]:
    """Prompt ids for chat messages: template tokens around each message's role and text.

    Content given as a list of parts (OpenAI's multi-part form) counts its text parts.
    """
    return chat_ids(
        (str(message.get("role", "user")), encode(_message_text(message.get("content"))))
        for message in messages
    )


def chat_ids(messages: Iterable[tuple[str, list[int]]]) -> list[int]:
    """The chat template around (role, content ids) pairs, already encoded."""
    ids = [token_id("<|begin_of_text|>")]
    for role, content in messages:
        ids.extend(token_id(f"<|{role}|>") for _ in range(MESSAGE_OVERHEAD_TOKENS))
        ids.extend(content)
    ids.extend(token_id("<|assistant|>") for _ in range(CHAT_PROMPT_TOKENS - 1))
    return ids


class PromptEncoder(Protocol):
    """How a replica turns a request's prompt into token ids (this module's approximation,
    or a model's own tokenizer: loadtest.sim.hf_tokenizer.HfTokenizer)."""

    name: str

    def chat(self, messages: Sequence[Mapping[str, Any]]) -> list[int]: ...

    def completion(self, text: str) -> list[int]: ...


class Approximate:
    """The approximate tokenizer as a PromptEncoder (what vllm-sim uses by default)."""

    name = "approximate"

    def chat(self, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        return encode_chat(messages)

    def completion(self, text: str) -> list[int]:
        return encode(text)


def chat_overhead_tokens() -> int:
    """Tokens the template adds around a single user message (9; see encode_chat)."""
    return len(encode_chat([{"role": "user", "content": ""}]))


def _message_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return ""


def _mix(value: int) -> int:
    """splitmix64's finaliser: a cheap, well-spread 64-bit hash."""
    value = (value + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return value ^ (value >> 31)


def output_token_text(seed: int, index: int) -> str:
    """The text of output token number `index` (from 0) of the request seeded `seed`."""
    word = OUTPUT_WORDS[_mix(seed * 1_000_003 + index) % len(OUTPUT_WORDS)]
    return word if index == 0 else " " + word


def output_text(seed: int, num_tokens: int) -> str:
    """The first `num_tokens` output tokens of the request seeded `seed`, joined."""
    return "".join(output_token_text(seed, index) for index in range(num_tokens))
