"""The approximate tokenizer and the pseudo-word output text."""

from loadtest.sim.tokenizer import (
    VOCAB_SIZE,
    count_tokens,
    encode,
    encode_chat,
    output_text,
    output_token_text,
)

PROSE = (
    "Turnout is an OpenAI-compatible gateway that fronts a fleet of LLM inference "
    "replicas and picks a replica for every request through a pluggable routing strategy. "
    "Beside it ships a load generator that runs the same workload against two deployments."
)


def test_encoding_is_deterministic_and_counts_about_four_characters_per_token() -> None:
    assert encode(PROSE) == encode(PROSE)
    assert all(0 <= token < VOCAB_SIZE for token in encode(PROSE))
    assert 3.5 <= len(PROSE) / count_tokens(PROSE) <= 5.5
    assert encode("Hello, world!") == encode("Hello ,   world !")  # whitespace is free
    assert count_tokens("Hello, world!") == 4
    assert count_tokens("internationalization") == 4  # long words are cut into pieces
    assert encode("") == []


def test_texts_that_share_a_prefix_share_their_leading_token_ids() -> None:
    system = "You are a helpful assistant. Answer briefly and cite your sources. " * 5
    first, second = encode(system + "What is a KV cache?"), encode(system + "Who are you?")
    shared = count_tokens(system)
    assert first[:shared] == second[:shared] and first[shared:] != second[shared:]


def test_chat_messages_add_template_tokens_and_text_parts_count() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    ids = encode_chat(messages)
    assert len(ids) == 1 + 2 * 4 + count_tokens("Be brief.") + count_tokens("Hi") + 4
    parts = [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    assert encode_chat(parts) == encode_chat([{"role": "user", "content": "Hi"}])


def test_output_text_is_deterministic_pseudo_words_from_the_seed() -> None:
    text = output_text(42, 50)
    assert text == output_text(42, 50) and text != output_text(43, 50)
    words = text.split(" ")
    assert len(words) == 50 and all(word.isalpha() for word in words)
    assert text == "".join(output_token_text(42, index) for index in range(50))
    assert output_token_text(42, 7).startswith(" ")
