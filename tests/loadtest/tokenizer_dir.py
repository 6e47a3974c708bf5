"""A small real tokenizer for tests, built here with `tokenizers` (no model hub).

A byte-level BPE (as Llama 3's and Qwen's) trained on the prompt and output word lists with
a small vocabulary, so that some words are one token and others two or three; Llama 3's chat
template and its begin-of-text token added by the post-processor for completions. Saved as
a directory like a model's: tokenizer.json and tokenizer_config.json.
"""

import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from loadtest.sim.tokenizer import OUTPUT_WORDS
from loadtest.workload.prompts import WORD_UNITS

BOS, EOT = "<|begin_of_text|>", "<|eot_id|>"
HEADER_START, HEADER_END = "<|start_header_id|>", "<|end_header_id|>"
# Llama 3.1's template, reduced to what a plain chat uses.
CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{{- message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{%- endif %}"
)


def build_tokenizer(directory: Path, *, vocab_size: int = 400) -> Path:
    """Train and save the tokenizer in `directory` (created); return it."""
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOT, HEADER_START, HEADER_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    prompt_words = [str(w).strip() for w in WORD_UNITS]
    lines = (
        [" ".join(prompt_words)] * 3 + [" ".join(OUTPUT_WORDS)] * 3 + ["a " * 50, "user assistant"]
    )
    tokenizer.train_from_iterator(lines, trainer)
    bos_id = tokenizer.token_to_id(BOS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    tokenizer.save(str(directory / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOT,
        "model_max_length": 131072,
        "chat_template": CHAT_TEMPLATE,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return directory
