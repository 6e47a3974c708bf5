"""A model's own tokenizer (Hugging Face `tokenizers`), read offline, counting as vLLM does.

Loaded from a directory holding `tokenizer.json` (and usually `tokenizer_config.json`), or
by a model name from the local Hugging Face cache (`HF_HOME`/`HF_HUB_CACHE`); never from
the network. How vLLM counts a prompt (vllm/entrypoints/openai/protocol.py):

- chat: the chat template is rendered to text, which is tokenized with
  `add_special_tokens=False` ("For most models, the chat template takes care of adding
  the special tokens so this should be set to false (as is the default)");
- completions: the prompt is tokenized with `add_special_tokens=True` (its default), so
  the tokenizer's post-processor adds BOS where the model wants it.

The template is rendered like transformers' `apply_chat_template` (sandboxed Jinja with
`trim_blocks`, `lstrip_blocks`, loop controls, `raise_exception`, `strftime_now`, a
`tojson` that keeps non-ASCII), with the special tokens and `add_generation_prompt=True`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.parser
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
)
_SPECIAL = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token")


class TokenizerError(ValueError):
    """A tokenizer that cannot be found or read; the message says where it was looked for."""


class _Generation(jinja2.ext.Extension):
    """transformers' `{% generation %}` block (marks assistant text): rendered as its body."""

    tags = {"generation"}  # noqa: RUF012 - jinja2's API

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.Scope(body, lineno=lineno)


def _raise(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _template_env() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[_Generation, jinja2.ext.loopcontrols],
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


def _token_text(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or an AddedToken dict."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        return str(value["content"])
    return None


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TokenizerError(f"{path}: not readable JSON: {exc}") from None
    return data if isinstance(data, dict) else {}


def _chat_template(directory: Path, config: dict[str, Any]) -> str | None:
    """The default chat template: chat_template.jinja, chat_template.json, then the config's."""
    jinja_file = directory / "chat_template.jinja"
    if jinja_file.is_file():
        return jinja_file.read_text()
    template: Any = _read_json(directory / "chat_template.json").get("chat_template")
    if template is None:
        template = config.get("chat_template")
    if isinstance(template, list):  # named templates: [{"name": ..., "template": ...}]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) else None


def resolve_directory(name_or_path: str) -> Path:
    """The directory of `name_or_path`: a path as given, or a model name in the local HF cache."""
    path = Path(name_or_path).expanduser()
    if path.is_file() and path.name == "tokenizer.json":
        return path.parent
    if path.is_dir():
        if not (path / "tokenizer.json").is_file():
            raise TokenizerError(
                f"tokenizer {name_or_path!r}: the directory has no tokenizer.json "
                "(only fast tokenizers are supported)"
            )
        return path
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise TokenizerError(f"tokenizer {name_or_path!r}: no such directory")
    # Imported here: only a name (not a path) needs the hub library, and it reads the
    # environment (HF_HOME, HF_HUB_CACHE) when imported.
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        found = snapshot_download(name_or_path, local_files_only=True, allow_patterns=list(_FILES))
    except (LocalEntryNotFoundError, HFValidationError, OSError):
        raise TokenizerError(
            f"tokenizer {name_or_path!r}: not a directory and not in the local Hugging Face "
            "cache (HF_HOME / HF_HUB_CACHE); give a directory holding tokenizer.json, or "
            f"fetch it once where the hub is reachable: hf download {name_or_path} "
            '--include "tokenizer*" "chat_template*"'
        ) from None
    directory = Path(str(found))
    if not (directory / "tokenizer.json").is_file():
        raise TokenizerError(
            f"tokenizer {name_or_path!r}: the cached snapshot {directory} has no tokenizer.json"
        )
    return directory


class HfTokenizer:
    """One model's tokenizer: prompt token ids for chat messages and for completion text."""

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self.directory = directory
        try:
            self._tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        except Exception as exc:  # tokenizers raises its own Exception type
            raise TokenizerError(f"tokenizer {name!r}: cannot read tokenizer.json: {exc}") from None
        config = _read_json(directory / "tokenizer_config.json")
        special_map = _read_json(directory / "special_tokens_map.json")
        self.special_tokens = {
            key: text
            for key in _SPECIAL
            if (text := _token_text(config.get(key, special_map.get(key)))) is not None
        }
        source = _chat_template(directory, config)
        self.has_chat_template = source is not None
        try:
            self._template = _template_env().from_string(source) if source else None
        except jinja2.TemplateError as exc:
            message = f"tokenizer {name!r}: the chat template is invalid: {exc}"
            raise TokenizerError(message) from None

    def render_chat(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """The chat template applied to `messages`, with the generation prompt.

        Without a template (a base model), the messages' texts joined by newlines: vLLM
        would refuse such a request, so this only keeps counting possible."""
        if self._template is None:
            return "\n".join(str(m.get("content") or "") for m in messages)
        try:
            return self._template.render(
                messages=list(messages),
                add_generation_prompt=True,
                tools=None,
                documents=None,
                **self.special_tokens,
            )
        except jinja2.TemplateError as exc:
            raise TokenizerError(f"tokenizer {self.name!r}: chat template failed: {exc}") from None

    def chat(self, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        """Prompt ids of chat `messages` (template rendered, no added special tokens)."""
        text = self.render_chat(messages)
        return list(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def completion(self, text: str) -> list[int]:
        """Prompt ids of a completion prompt (special tokens added, as vLLM does)."""
        return list(self._tokenizer.encode(text, add_special_tokens=True).ids)

    def count(self, texts: Sequence[str], api: str) -> list[int]:
        """Token counts of single-user-message chats ("chat") or completion prompts."""
        if api == "chat":
            rendered = self._render_user_messages(texts)
            encodings = self._tokenizer.encode_batch_fast(rendered, add_special_tokens=False)
        else:
            encodings = self._tokenizer.encode_batch_fast(list(texts), add_special_tokens=True)
        return [len(e.ids) for e in encodings]

    def _render_user_messages(self, contents: Sequence[str]) -> list[str]:
        # Rendering once around a placeholder and splicing each content in is much faster
        # than one Jinja render per text. Only where it gives the same text: the template
        # must leave content untouched (checked with two placeholders), and texts with
        # surrounding whitespace, which templates often trim, are rendered one by one.
        first, second = "Ab\ue000Cd", "Xy\ue001Zw"
        head_a = self.render_chat([{"role": "user", "content": first}])
        head_b = self.render_chat([{"role": "user", "content": second}])
        splice = head_a.count(first) == 1 and head_a.replace(first, second) == head_b
        before, _, after = head_a.partition(first)
        return [
            before + text + after
            if splice and text == text.strip()
            else self.render_chat([{"role": "user", "content": text}])
            for text in contents
        ]


def load_tokenizer(name_or_path: str) -> HfTokenizer:
    """The tokenizer at a directory, or of a model name in the local HF cache. Raises
    TokenizerError naming what was looked for."""
    return HfTokenizer(name_or_path, resolve_directory(name_or_path))
