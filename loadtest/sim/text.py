"""Prompt token ids and output text for the server (stand-in until the engine's tokenizer lands)."""

import zlib

_WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "magna", "vera", "tempo", "nova", "cursus")


def prompt_token_ids(text: str) -> list[int]:
    """About four characters a token."""
    return [zlib.crc32(text[i : i + 4].encode()) & 0xFFFF for i in range(0, max(len(text), 1), 4)]


def token_text(seed: int, index: int) -> str:
    return " " + _WORDS[(seed * 31 + index * 7) % len(_WORDS)]
