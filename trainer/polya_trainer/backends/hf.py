"""transformers backend: batched `generate` with left padding and `num_return_sequences`."""

from __future__ import annotations

from typing import Any

from polya_trainer.backends.base import Completion, Prompt, Sampling, prompt_ids


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class HFGenerator:
    """Generation with `model.generate`, `batch_size` prompts per call.

    Determinism: the generator is reseeded before each batch from the seed and the batch's
    position (``sampling.offset`` + its start), so the same prompts, batch size and seed
    give the same completions, and so does any slice of the list that starts on a batch
    boundary (a sharded stage's part).
    """

    def __init__(self, model: Any, name: str | None = None, batch_size: int = 16,
                 device: str | None = None, seed: int = 0, **_: Any) -> None:
        from polya_trainer.backends.models import load_causal_lm, load_tokenizer

        self.device = device or default_device()
        self.batch_size = max(1, batch_size)
        self.tokenizer = load_tokenizer(model, name)
        self.tokenizer.padding_side = "left"
        self.model = load_causal_lm(model, name, device=self.device)
        self.model.eval()
        gc = self.model.generation_config
        eos = gc.eos_token_id if gc.eos_token_id is not None else self.tokenizer.eos_token_id
        self.eos_ids: set[int] = set(eos if isinstance(eos, list) else [eos]) - {None}
        self.pad_id = self.tokenizer.pad_token_id

    def _kwargs(self, sampling: Sampling, n: int) -> dict[str, Any]:
        kw: dict[str, Any] = {"max_new_tokens": sampling.max_new_tokens,
                              "num_return_sequences": n, "pad_token_id": self.pad_id,
                              "eos_token_id": sorted(self.eos_ids)}
        if sampling.greedy:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            # top_k=0: no top-k cut. transformers otherwise applies its global default top_k=50
            # (GenerationConfig defaults), while vLLM (top_k -1) and TRL's GRPO rollouts
            # (GRPOConfig.top_k 0) sample the whole distribution: pass@k and RL must agree.
            kw.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p,
                      top_k=0)
        return kw

    def _trim(self, row: list[int]) -> tuple[list[int], int, bool]:
        """Tokens up to the first end-of-sequence, the count generated (eos included), and
        whether it ended (False: cut at the length limit)."""
        for i, tok in enumerate(row):
            if tok in self.eos_ids:
                return row[:i], i + 1, True
        # No eos: drop trailing padding (only present when pad is distinct from eos).
        end = len(row)
        while end and row[end - 1] == self.pad_id and self.pad_id not in self.eos_ids:
            end -= 1
        return row[:end], end, False

    def generate(self, prompts: list[Prompt], sampling: Sampling) -> list[list[Completion]]:
        import torch

        # Greedy decoding gives one answer; it is repeated n times.
        n = 1 if sampling.greedy else sampling.n
        kwargs = self._kwargs(sampling, n)
        out: list[list[Completion]] = []
        ids = prompt_ids(self.tokenizer, prompts)
        self.last_prompt_ids = ids
        for start in range(0, len(ids), self.batch_size):
            torch.manual_seed((sampling.seed + (sampling.offset + start) * n) % 2**31)
            batch = ids[start:start + self.batch_size]
            enc = self.tokenizer.pad({"input_ids": batch}, return_tensors="pt",
                                     padding=True).to(self.device)
            with torch.inference_mode():
                seqs = self.model.generate(**enc, **kwargs)
            new = seqs[:, enc["input_ids"].shape[1]:].tolist()
            for i in range(len(batch)):
                group = []
                for row in new[i * n:(i + 1) * n]:
                    toks, count, ended = self._trim(row)
                    text = self.tokenizer.decode(toks, skip_special_tokens=True)
                    reason = "stop" if ended or count < sampling.max_new_tokens else "length"
                    group.append(Completion(text=text, num_tokens=count, finish_reason=reason))
                out.append(group * (sampling.n // n))
        return out

    def close(self) -> None:
        import gc

        import torch

        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
