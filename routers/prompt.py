"""What a strategy may know of a prompt: its size and the hashes of its leading blocks.

Both clocks compute them the same way from what they have: the gateway from the request's
text (`from_openai_body`), the simulator from token ids (`chained_hashes` over token blocks).
A block hash is chained over everything before it (CRC-32 continued block by block), so two
prompts share hash i exactly when they agree up to the end of block i (up to CRC collisions,
which only ever cost a routing choice). CRC-32 is stable across processes, unlike Python's
salted str hash, so several gateways compute the same keys.
"""

import zlib
from array import array
from collections.abc import Iterable
from typing import Any

# 64 bytes of text is about 16 tokens: vLLM's default KV block.
BLOCK_BYTES = 64
# Enough to tell shared system prompts and documents apart; bounds the cost per request.
MAX_BLOCKS = 64
# Chat templates add a few tokens per message (role markers, separators).
TOKENS_PER_MESSAGE = 4


def chained_hashes(blocks: Iterable[bytes], limit: int = MAX_BLOCKS) -> tuple[int, ...]:
    """The running CRC-32 after each of the first `limit` blocks."""
    out: list[int] = []
    running = 0
    for block in blocks:
        if len(out) >= limit:
            break
        running = zlib.crc32(block, running)
        out.append(running)
    return tuple(out)


def text_blocks(text: bytes, size: int = BLOCK_BYTES, limit: int = MAX_BLOCKS) -> list[bytes]:
    """The full `size`-byte blocks at the start of `text` (a partial last block is left out,
    as an engine only caches full blocks)."""
    count = min(len(text) // size, limit)
    return [text[i * size : (i + 1) * size] for i in range(count)]


def from_openai_body(body: dict[str, Any], hashes: bool = True) -> tuple[int, tuple[int, ...]]:
    """(estimated prompt tokens, prefix block hashes) of a chat or completions body; no
    hashes (()) when `hashes` is False."""
    messages = body.get("messages")
    if isinstance(messages, list):
        parts = []
        for message in messages:
            if isinstance(message, dict):
                parts.append(f"{message.get('role', '')}\n{_content_text(message.get('content'))}")
        text = "\n".join(parts).encode("utf-8", "replace")
        overhead = TOKENS_PER_MESSAGE * len(messages)
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
            # Token ids already: hash them as 16-token blocks of fixed-width integers.
            try:
                ids = array("q", prompt)
            except OverflowError:  # not token ids any engine has; the engine will say so
                return len(prompt), ()
            if not hashes:
                return len(prompt), ()
            return len(prompt), chained_hashes(text_blocks(ids.tobytes(), 16 * ids.itemsize))
        text = _prompt_text(prompt).encode("utf-8", "replace")
        overhead = 0
    # About four bytes of text per token for English-like text.
    tokens = len(text) // 4 + overhead
    return tokens, chained_hashes(text_blocks(text)) if hashes else ()


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: only the text ones count
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return "\n".join(prompt)
    return ""
