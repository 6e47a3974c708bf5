from routers.prompt import BLOCK_BYTES, MAX_BLOCKS, chained_hashes, from_openai_body, text_blocks

SYSTEM = "You are a careful assistant. " * 20  # ~580 bytes: nine full blocks


def chat(*contents: str) -> dict[str, object]:
    return {
        "model": "m",
        "messages": [{"role": "system", "content": SYSTEM}]
        + [{"role": "user", "content": c} for c in contents],
    }


def test_prompts_sharing_a_system_prompt_share_its_leading_block_hashes() -> None:
    _, one = from_openai_body(chat("What is the capital of France? " * 4))
    _, two = from_openai_body(chat("Write a haiku about rivers, please. " * 4))
    shared = len(SYSTEM) // BLOCK_BYTES
    assert one[: shared - 1] == two[: shared - 1]
    assert one[shared + 1 :] != two[shared + 1 :]
    assert one != two


def test_a_hash_covers_everything_before_it() -> None:
    # Same second block, different first block: every hash differs.
    a = chained_hashes([b"x" * 64, b"y" * 64])
    b = chained_hashes([b"z" * 64, b"y" * 64])
    assert a[0] != b[0] and a[1] != b[1]
    assert chained_hashes([b"x" * 64, b"y" * 64]) == a  # stable across calls and processes


def test_only_full_blocks_count_and_the_count_is_bounded() -> None:
    assert text_blocks(b"a" * (BLOCK_BYTES - 1)) == []
    assert len(text_blocks(b"a" * (BLOCK_BYTES * 3 + 5))) == 3
    assert len(text_blocks(b"a" * BLOCK_BYTES * (MAX_BLOCKS + 10))) == MAX_BLOCKS


def test_token_estimate_counts_text_not_json() -> None:
    text = "word " * 400  # 2,000 characters: about 500 tokens
    tokens, _ = from_openai_body({"messages": [{"role": "user", "content": text}]})
    assert 490 <= tokens <= 520
    escaped = {"messages": [{"role": "user", "content": '"quoted"\n' * 200}]}
    tokens, _ = from_openai_body(escaped)
    assert tokens < 500  # the JSON escapes of the body would have doubled a bytes/4 estimate


def test_completions_prompts_text_parts_and_token_ids() -> None:
    parts = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "abcd" * 100}, {"x": 1}]}
        ]
    }
    tokens, hashes = from_openai_body(parts)
    assert tokens >= 100 and hashes
    assert from_openai_body({"prompt": "abcd" * 100})[0] == 100
    ids, id_hashes = from_openai_body({"prompt": list(range(100))})
    assert ids == 100 and len(id_hashes) == 6  # six full blocks of 16 tokens
    assert from_openai_body({"prompt": [2**70]}) == (1, ())
    assert from_openai_body({"prompt": {"odd": True}}) == (0, ())
    assert from_openai_body({"messages": ["not a message", None]})[1] == ()


def test_hashes_can_be_left_out_and_the_size_stays() -> None:
    body = {"messages": [{"role": "user", "content": "What is the capital of France? " * 8}]}
    tokens, hashes = from_openai_body(body)
    assert len(hashes) == len("user\n" + body["messages"][0]["content"]) // BLOCK_BYTES == 3
    assert from_openai_body(body, hashes=False) == (tokens, ())
    assert from_openai_body({"prompt": list(range(40))}, hashes=False) == (40, ())
