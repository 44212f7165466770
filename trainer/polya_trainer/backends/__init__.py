"""One `Generator` interface over two inference engines (transformers and vLLM).

Backends take prompts rendered with the tokenizer's chat template, either as text or as token
ids, and return, per prompt, `n` completions. Text is tokenized once, without special tokens
(``prompts.encode``): the template already holds the BOS, and adding another one is what
vLLM's own text path did. Both backends therefore see exactly the ids TRL's GRPO rollouts
see. vLLM is imported lazily by its backend.

The interface lives in :mod:`polya_trainer.backends.base` (which the backends import, so that
this package's factory can import them without a circle) and is re-exported here.
"""

from __future__ import annotations

from typing import Any

from polya_trainer.backends.base import Completion, Generator, Prompt, Sampling, prompt_ids

__all__ = ["Completion", "Generator", "Prompt", "Sampling", "load_generator", "prompt_ids"]


def load_generator(backend: str, model: Any, name: str | None = None,
                   gpus: int = 0, **kwargs: Any) -> Generator:
    """Build a backend ("hf" or "vllm") for `name` (default: the spec's base model).

    `model` is the spec's `ModelSpec`; `gpus` sets vLLM's tensor parallel size.
    """
    if backend == "hf":
        from polya_trainer.backends.hf import HFGenerator

        return HFGenerator(model, name=name, **kwargs)
    if backend == "vllm":
        from polya_trainer.backends.vllm import VLLMGenerator

        return VLLMGenerator(model, name=name, tensor_parallel_size=max(1, gpus), **kwargs)
    raise ValueError(f"unknown backend {backend!r}; expected 'hf' or 'vllm'")
