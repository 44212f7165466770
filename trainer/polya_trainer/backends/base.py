"""The backend interface: prompts in, ``Completion`` lists out (see
:mod:`polya_trainer.backends`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

Prompt = str | list[int]
"""Chat-template text (tokenized without special tokens) or its token ids."""


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters shared by every backend."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0
    offset: int = 0
    """Position of the first prompt in the whole work list: each prompt's random stream
    derives from seed and its position, so a slice (a sharded stage's part) samples exactly
    what the whole list does there (hf: slices must start on a batch boundary)."""

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class Completion:
    text: str
    num_tokens: int
    finish_reason: str = "stop"
    """"stop" (end of sequence or a stop token) or "length" (cut at max_new_tokens)."""

    @property
    def truncated(self) -> bool:
        """Cut off by the length limit: never a training target, always scored wrong."""
        return self.finish_reason == "length"


class Generator(Protocol):
    """What every backend offers."""

    tokenizer: Any

    def generate(self, prompts: list[Prompt], sampling: Sampling) -> list[list[Completion]]:
        """For each prompt, `sampling.n` completions (order preserved)."""
        ...

    def close(self) -> None:
        """Free the engine's memory (GPU, worker processes)."""
        ...


def prompt_ids(tokenizer: Any, prompts: list[Prompt]) -> list[list[int]]:
    """Token ids of each prompt: ids as given, text through ``prompts.encode``."""
    from polya_trainer.data.prompts import encode

    return [list(p) if not isinstance(p, str) else encode(tokenizer, p) for p in prompts]
