"""Which tokenizer counts each model's prompts: `--tokenizer NAME_OR_PATH` (every model) or
`--tokenizer MODEL=NAME_OR_PATH` (one model), given on the command line or by an environment.

Without one, prompts are counted with the simulator's approximate tokenizer: exact against
vllm-sim, off against a real model (a prompt of 128 approximate tokens can be several
hundred of a real tokenizer's, or fewer).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from loadtest.sim.hf_tokenizer import HfTokenizer, TokenizerError, load_tokenizer

__all__ = ["TokenizerChoice", "TokenizerError", "Tokenizers", "load_tokenizers"]


@dataclass(frozen=True)
class TokenizerChoice:
    """Tokenizer names or directories: one for every model, and per-model exceptions."""

    default: str | None = None
    by_model: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, values: Iterable[str]) -> TokenizerChoice:
        """From option values: NAME_OR_PATH, or MODEL=NAME_OR_PATH. Raises TokenizerError."""
        default: str | None = None
        by_model: dict[str, str] = {}
        for value in values:
            model, sep, name = value.partition("=")
            if sep and model and name:
                by_model[model] = name
            elif sep or not value:
                raise TokenizerError(f"--tokenizer {value!r}: expected NAME_OR_PATH or MODEL=NAME")
            elif default is not None and default != value:
                raise TokenizerError(
                    f"--tokenizer: two tokenizers for every model ({default!r}, {value!r}); "
                    "name a model with MODEL=NAME_OR_PATH"
                )
            else:
                default = value
        return cls(default, tuple(sorted(by_model.items())))

    @classmethod
    def of(cls, value: str | Mapping[str, str] | None) -> TokenizerChoice:
        """From an environment's `tokenizer:` (a name or path, or {model: name or path})."""
        if value is None:
            return cls()
        if isinstance(value, str):
            return cls(value)
        return cls(None, tuple(sorted(value.items())))

    @property
    def given(self) -> bool:
        return self.default is not None or bool(self.by_model)

    def name_for(self, model: str) -> str | None:
        return dict(self.by_model).get(model, self.default)

    def or_else(self, other: TokenizerChoice) -> TokenizerChoice:
        """This choice where it names a tokenizer, `other` elsewhere."""
        if self.default is not None:
            return self  # it names one for every model
        merged = {**dict(other.by_model), **dict(self.by_model)}
        return TokenizerChoice(other.default, tuple(sorted(merged.items())))

    def describe(self, models: Iterable[str] = ()) -> str:
        """ "tokenizer X" / "tokenizers: m1 X, m2 approximate" / "approximate tokenizer"."""
        if not self.given:
            return "the simulator's approximate tokenizer"
        names = {m: self.name_for(m) or "approximate" for m in models}
        if not names or len(set(names.values())) == 1:
            only = next(iter(names.values()), None) or self.default or "approximate"
            return f"tokenizer {only}"
        return "tokenizers " + ", ".join(f"{m}: {n}" for m, n in names.items())


@dataclass(frozen=True)
class Tokenizers:
    """A choice with its tokenizers loaded (each name once)."""

    choice: TokenizerChoice = field(default_factory=TokenizerChoice)
    loaded: Mapping[str, HfTokenizer] = field(default_factory=dict)

    def for_model(self, model: str) -> HfTokenizer | None:
        name = self.choice.name_for(model)
        return self.loaded[name] if name is not None else None


def load_tokenizers(choice: TokenizerChoice) -> Tokenizers:
    """Load every tokenizer `choice` names. Raises TokenizerError naming the one that failed."""
    names = {name for name in (choice.default, *dict(choice.by_model).values()) if name}
    return Tokenizers(choice, {name: load_tokenizer(name) for name in sorted(names)})
