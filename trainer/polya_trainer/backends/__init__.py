"""One `Generator` interface over two inference engines (transformers and vLLM).

Backends take chat-formatted prompt strings (already rendered with the tokenizer's chat
template) and return, per prompt, `n` completions. vLLM is imported lazily by its backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters shared by every backend."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class Completion:
    text: str
    num_tokens: int


class Generator(Protocol):
    """What every backend offers."""

    tokenizer: Any

    def generate(self, prompts: list[str], sampling: Sampling) -> list[list[Completion]]:
        """For each prompt, `sampling.n` completions (order preserved)."""
        ...

    def close(self) -> None:
        """Free the engine's memory (GPU, worker processes)."""
        ...


def load_generator(backend: str, model: Any, name: str | None = None,
                   gpus: int = 0, **kwargs: Any) -> Generator:
    """Build a backend ("hf" or "vllm") for `name` (default: the spec's base model).

    `model` is the spec's `ModelSpec`; `gpus` sets vLLM's tensor parallel size.
    """
    if backend == "hf":
        from .hf import HFGenerator

        return HFGenerator(model, name=name, **kwargs)
    if backend == "vllm":
        from .vllm import VLLMGenerator

        return VLLMGenerator(model, name=name, tensor_parallel_size=max(1, gpus), **kwargs)
    raise ValueError(f"unknown backend {backend!r}; expected 'hf' or 'vllm'")
