"""GPU benchmark for an H100/H200 (no hub: random-initialised models built from a config).

Parts (each is skipped, with the reason in the JSON, when what it needs is missing):

* ``sft``: training throughput (tokens/s) and model FLOPs utilisation (MFU) of a Qwen2-style
  model (``--model-size 1.5b`` is shaped like Qwen2.5-1.5B) at ``--seq-len`` 2048 in bf16:
  - ``torch_loop``: a bare PyTorch loop (forward with labels, backward, fused AdamW), the
    ceiling for this model and attention kernel;
  - ``ours``: TRL ``SFTTrainer`` with the config our midtrain stage builds
    (``polya_trainer.stages.midtrain.sft_config``) plus our progress/SIGTERM callback;
  - ``trl_bare``: TRL ``SFTTrainer`` with a plain ``SFTConfig`` of the same workload.
  Goal: ours >= 45% MFU on an H100, and ours/trl_bare step time <= 1.03.
* ``grpo``: GRPO step time, ours (``polya_trainer.stages.rl.grpo_config`` + our callback) against
  a bare ``GRPOConfig`` (needs TRL), both with rollouts from transformers' ``generate``.
* ``vllm``: generation tokens/s through our vLLM backend against a bare ``LLM.generate`` on
  the same engine (needs vLLM).

MFU formula (stated in the JSON): ``flops_per_token = 6 * N + 12 * L * H * S`` with N the
parameter count (tied embedding counted once: it is the LM head matmul; the lookup is free),
L layers, H hidden size and S the sequence length (attention scores and values, forward and
backward, counted over the full S x S matrix as in the PaLM appendix, not halved for the
causal mask). ``MFU = tokens_per_s * flops_per_token / peak``, peak = dense bf16 of the GPU
(H100 SXM and H200: 989 TFLOP/s; H100 PCIe 756), found from ``torch.cuda.get_device_name``
or given with ``--peak-tflops``.

Step time = interval between consecutive optimizer steps' ends (CUDA synchronised), the
first ``--warmup`` intervals dropped; median, min, max and spread over the rest.

    python bench/gpu.py                 # on the GPU machine; writes bench/results/gpu.json
    python bench/gpu.py --dry-run       # tiny config on CPU, seconds: checks the script runs
    python bench/gpu.py --model-size 0.5b --seq-len 1024 --steps 10 --parts sft

Needs torch, transformers and accelerate; TRL, vLLM, datasets and the project's own
dependencies (pydantic, prometheus-client) are optional.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import itertools
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "trainer"))

from common import figure, machine_info, package_versions, stats, write_result  # noqa: E402

SIZES: dict[str, dict[str, Any]] = {
    # shaped like Qwen2.5-1.5B (1.54B parameters with the tied embedding)
    "1.5b": {"hidden_size": 1536, "num_hidden_layers": 28, "num_attention_heads": 12,
             "num_key_value_heads": 2, "intermediate_size": 8960, "vocab_size": 151936},
    # shaped like Qwen2.5-0.5B
    "0.5b": {"hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14,
             "num_key_value_heads": 2, "intermediate_size": 4864, "vocab_size": 151936},
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 512},
}
# Dense bf16 peak FLOP/s; the first matching substring wins.
PEAK_BF16: list[tuple[str, float]] = [
    ("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12), ("H200", 989e12),
    ("H800", 989e12), ("B200", 2250e12), ("A100", 312e12), ("L40S", 362e12), ("A10G", 70e12),
]
MFU_GOAL = 0.45
STEP_RATIO_GOAL = 1.03
GEN_RATIO_GOAL = 0.97
SPECIALS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
PAD_ID, EOS_ID = 0, 3
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


# --------------------------------------------------------------------------- setup


def peak_flops(device_name: str, override_tflops: float | None) -> float | None:
    if override_tflops:
        return override_tflops * 1e12
    for key, peak in PEAK_BF16:
        if key.lower() in device_name.lower():
            return peak
    return None


def build_tokenizer(vocab_size: int) -> Any:
    """A word-level tokenizer covering every id of the model (random models sample them all)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS)}
    vocab.update({f"w{i}": i for i in range(len(SPECIALS), vocab_size)})
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    raw.add_special_tokens(SPECIALS)
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", pad_token="<pad>",
                                  eos_token="<|im_end|>", padding_side="left")
    tok.chat_template = CHAT_TEMPLATE
    return tok


def model_config(size: str, seq_len: int, attn: str) -> Any:
    from transformers import Qwen2Config

    cfg = Qwen2Config(**SIZES[size], tie_word_embeddings=True, rope_theta=1_000_000.0,
                      max_position_embeddings=max(seq_len, 4096), pad_token_id=PAD_ID,
                      eos_token_id=EOS_ID, bos_token_id=None, use_cache=False)
    cfg._attn_implementation = attn
    return cfg


def build_model(cfg: Any, dtype: Any, device: str, seed: int = 0) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype,
                                                 attn_implementation=cfg._attn_implementation)
    return model


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_mem_gib() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 1024**3, 2)


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def error_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()[-1500:]


def missing(*modules: str) -> str | None:
    """Why a part cannot run ("<module> not installed"), or None."""
    lacking = [m for m in modules if importlib.util.find_spec(m) is None]
    return f"{', '.join(lacking)} not installed" if lacking else None


def ours_importable(module: str) -> str | None:
    """Why our code path cannot be imported here, or None."""
    try:
        __import__(f"polya_trainer.{module}")
    except Exception as exc:  # any import failure means "not available on this box"
        return f"polya_trainer.{module} not importable: {error_text(exc)}"
    return None


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def step_timer() -> Any:
    """A TrainerCallback recording the (synchronised) time at each optimizer step's end."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.ends: list[float] = []

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            sync()
            self.ends = [time.perf_counter()]

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            sync()
            self.ends.append(time.perf_counter())

    return StepTimer()


def intervals(ends: list[float], warmup: int) -> list[float]:
    """Step durations from consecutive end times, the first `warmup` dropped (at least one)."""
    d = [b - a for a, b in itertools.pairwise(ends)]
    return d[min(max(warmup, 1), max(len(d) - 1, 0)):] if d else []


# --------------------------------------------------------------------------- SFT


def sft_rows(n: int, seq_len: int, vocab: int, seed: int = 0) -> list[dict[str, list[int]]]:
    """Pre-tokenized rows of exactly `seq_len` ids; the loss covers the last three quarters."""
    rng = random.Random(seed)
    prompt = seq_len // 4
    return [{"input_ids": [rng.randrange(len(SPECIALS), vocab) for _ in range(seq_len)],
             "completion_mask": [0] * prompt + [1] * (seq_len - prompt)} for _ in range(n)]


def throughput(durations: list[float], tokens_per_step: int, flops_per_token: float,
               peak: float | None) -> dict[str, Any]:
    st = stats(durations)
    out: dict[str, Any] = {"step_seconds": st, "tokens_per_step": tokens_per_step}
    if st["median"]:
        tps = tokens_per_step / st["median"]
        out["tokens_per_second"] = round(tps, 1)
        out["tokens_per_second_range"] = [round(tokens_per_step / st["max"], 1),
                                          round(tokens_per_step / st["min"], 1)]
        out["mfu"] = round(tps * flops_per_token / peak, 4) if peak else None
    return out


def sft_torch_loop(a: argparse.Namespace, cfg: Any, dtype: Any, device: str, mb: int,
                   ckpt: bool) -> list[float]:
    import torch

    model = build_model(cfg, dtype, device)
    if ckpt:
        model.gradient_checkpointing_enable()
    model.train()
    fused = device == "cuda"
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=fused)
    rows = sft_rows(mb * (a.steps + 1), a.seq_len, cfg.vocab_size)
    ends = []
    try:
        sync()
        ends.append(time.perf_counter())
        for step in range(a.steps):
            batch = torch.tensor([r["input_ids"] for r in rows[step * mb:(step + 1) * mb]],
                                 device=device)
            labels = batch.clone()
            labels[:, : a.seq_len // 4] = -100
            with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
                loss = model(input_ids=batch, labels=labels).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            sync()
            ends.append(time.perf_counter())
    finally:
        del model, opt
    return intervals(ends, a.warmup)


def device_trainer_args(device: str) -> dict[str, Any]:
    if device == "cuda":
        return {"bf16": True, "fp16": False}
    return {"use_cpu": True, "bf16": False, "fp16": False, "dataloader_pin_memory": False}


def sft_trainer(a: argparse.Namespace, cfg: Any, dtype: Any, device: str, mb: int, ckpt: bool,
                ours: bool) -> list[float]:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    tok = build_tokenizer(cfg.vocab_size)
    data = Dataset.from_list(sft_rows(mb * (a.steps + 1), a.seq_len, cfg.vocab_size))
    timer = step_timer()
    with scratch_dir("polya-bench-sft-") as out:
        callbacks: list[Any] = [timer]
        stack = contextlib.ExitStack()
        if ours:
            from polya_trainer.runtime.progress import Reporter
            from polya_trainer.spec import PolyaRunSpec
            from polya_trainer.stages import midtrain
            from polya_trainer.stages import training as T

            spec = PolyaRunSpec.model_validate({
                "model": {"name": "random-init", "dtype": "auto"},
                "stages": {"midtrain": {
                    "perDeviceBatchSize": mb, "gradientAccumulationSteps": 1,
                    "maxLength": a.seq_len, "maxSteps": a.steps, "saveSteps": 10**6,
                    "learningRate": 1e-5, "trainerArgs": {"gradient_checkpointing": ckpt}}}})
            args = midtrain.sft_config(spec, out)
            flag = stack.enter_context(T.sigterm_flag())
            callbacks.insert(0, T.make_callback(Reporter("midtrain", "polya"), flag))
        else:
            args = SFTConfig(output_dir=str(out), max_steps=a.steps,
                             per_device_train_batch_size=mb, gradient_accumulation_steps=1,
                             learning_rate=1e-5, max_length=a.seq_len,
                             completion_only_loss=True, gradient_checkpointing=ckpt,
                             save_strategy="no", report_to="none", disable_tqdm=True,
                             **device_trainer_args(device))
        model = build_model(cfg, dtype, device)
        with stack:
            trainer = SFTTrainer(model=model, args=args, train_dataset=data,
                                 processing_class=tok, callbacks=callbacks)
            try:
                trainer.train()
            finally:
                del trainer, model
    return intervals(timer.ends, a.warmup)


def with_fallback(run: Callable[[int, bool], list[float]], mb: int, ckpt: bool,
                  on_gpu: bool) -> tuple[list[float], int, bool, list[str]]:
    """Run at micro-batch `mb`; on CUDA OOM halve it, then turn gradient checkpointing on."""
    tries = [(mb, ckpt)]
    m = mb
    while on_gpu and m > 1:
        m //= 2
        tries.append((m, ckpt))
    if on_gpu and not ckpt:
        tries.append((mb, True))
    log: list[str] = []
    for m, c in tries:
        try:
            free_memory()
            return run(m, c), m, c, log
        except Exception as exc:
            if not (on_gpu and is_oom(exc)):
                raise
            log.append(f"out of memory at micro-batch {m}, gradient checkpointing {c}")
    raise RuntimeError("; ".join(log))


def bench_sft(a: argparse.Namespace, device: str, peak: float | None) -> dict[str, Any]:
    import torch

    cfg = model_config(a.model_size, a.seq_len, a.attn)
    dtype = getattr(torch, a.weights_dtype) if device == "cuda" else torch.float32
    probe = build_model(cfg, dtype, "meta")
    n_params = sum(p.numel() for p in probe.parameters())
    del probe
    L, H, S = cfg.num_hidden_layers, cfg.hidden_size, a.seq_len
    fpt = 6 * n_params + 12 * L * H * S
    out: dict[str, Any] = {
        "model": {"size": a.model_size, **SIZES[a.model_size], "parameters": n_params,
                  "tied_embedding": True, "attention": a.attn, "dtype": str(dtype)},
        "seq_len": S, "micro_batch_requested": a.micro_batch,
        "flops_per_token": fpt,
        "flops_formula": "6*N + 12*L*H*S (N parameters, tied embedding once; full SxS "
                         "attention, not halved for the causal mask)",
        "peak_flops": peak, "mfu_goal": MFU_GOAL, "step_ratio_goal": STEP_RATIO_GOAL,
    }
    variants: list[tuple[str, Callable[[int, bool], list[float]], str | None]] = [
        ("torch_loop", lambda m, c: sft_torch_loop(a, cfg, dtype, device, m, c), None)]
    trl_missing = missing("trl", "datasets")
    variants.append(("ours", lambda m, c: sft_trainer(a, cfg, dtype, device, m, c, True),
                     trl_missing or ours_importable("stages.midtrain")))
    variants.append(("trl_bare", lambda m, c: sft_trainer(a, cfg, dtype, device, m, c, False),
                     trl_missing))
    for name, run, skip in variants:
        if name not in a.sft_variants:
            out[name] = {"skipped": "not selected (--sft-variants)"}
            continue
        if skip:
            out[name] = {"skipped": skip}
            continue
        try:
            durs, mb, ckpt, log = with_fallback(run, a.micro_batch, a.grad_ckpt,
                                                device == "cuda")
            out[name] = {"micro_batch": mb, "gradient_checkpointing": ckpt,
                         **throughput(durs, mb * S, fpt, peak), "peak_memory_gib": peak_mem_gib()}
            if log:
                out[name]["fallbacks"] = log
        except Exception as exc:
            out[name] = {"error": error_text(exc)}
        print(f"sft/{name}: {out[name].get('tokens_per_second')} tokens/s, "
              f"MFU {out[name].get('mfu')}", flush=True)
        free_memory()
    return out


# --------------------------------------------------------------------------- GRPO


def length_reward(completions: list[Any], **_: Any) -> list[float]:
    """A cheap reward with spread (random models give all-equal math rewards)."""
    texts = ["".join(m.get("content", "") for m in c) if isinstance(c, list) else str(c)
             for c in completions]
    return [float(len(t) % 7) / 6.0 for t in texts]


def grpo_run(a: argparse.Namespace, cfg: Any, dtype: Any, device: str, ours: bool
             ) -> list[float]:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    tok = build_tokenizer(cfg.vocab_size)
    rng = random.Random(1)
    prompts = [{"prompt": [{"role": "user", "content": " ".join(
        f"w{rng.randrange(len(SPECIALS), cfg.vocab_size)}" for _ in range(a.grpo_prompt_len))}]}
        for _ in range(a.grpo_batch * (a.steps + 1))]
    data = Dataset.from_list(prompts)
    timer = step_timer()
    with scratch_dir("polya-bench-grpo-") as out:
        callbacks: list[Any] = [timer]
        stack = contextlib.ExitStack()
        if ours:
            from polya_trainer.runtime.progress import Reporter
            from polya_trainer.spec import PolyaRunSpec
            from polya_trainer.stages import rl
            from polya_trainer.stages import training as T

            spec = PolyaRunSpec.model_validate({
                "model": {"name": "random-init", "dtype": "auto"},
                "stages": {"rl": {
                    "perDeviceBatchSize": a.grpo_batch, "gradientAccumulationSteps": 1,
                    "numGenerations": a.grpo_generations,
                    "maxCompletionLength": a.grpo_completion_len, "maxSteps": a.steps,
                    "saveSteps": 10**6, "learningRate": 1e-6,
                    "trainerArgs": {"gradient_checkpointing": a.grad_ckpt, "use_vllm": False}}}})
            args = rl.grpo_config(spec, out)
            flag = stack.enter_context(T.sigterm_flag())
            callbacks.insert(0, T.make_callback(Reporter("rl", "polya"), flag))
        else:
            args = GRPOConfig(output_dir=str(out), max_steps=a.steps,
                              per_device_train_batch_size=a.grpo_batch,
                              gradient_accumulation_steps=1, learning_rate=1e-6,
                              num_generations=a.grpo_generations,
                              max_completion_length=a.grpo_completion_len, temperature=1.0,
                              beta=0.0, loss_type="dapo", scale_rewards="group",
                              gradient_checkpointing=a.grad_ckpt, use_vllm=False,
                              save_strategy="no", report_to="none", disable_tqdm=True,
                              **device_trainer_args(device))
        model = build_model(cfg, dtype, device)
        model.generation_config.eos_token_id = EOS_ID
        model.generation_config.pad_token_id = PAD_ID
        with stack:
            trainer = GRPOTrainer(model=model, reward_funcs=[length_reward], args=args,
                                  train_dataset=data, processing_class=tok, callbacks=callbacks)
            try:
                trainer.train()
            finally:
                del trainer, model
    return intervals(timer.ends, a.warmup)


def bench_grpo(a: argparse.Namespace, device: str) -> dict[str, Any]:
    import torch

    why = missing("trl", "datasets")
    if why:
        return {"skipped": why}
    cfg = model_config(a.model_size, a.seq_len, a.attn)
    cfg.use_cache = True  # rollouts decode with the KV cache
    dtype = getattr(torch, a.weights_dtype) if device == "cuda" else torch.float32
    out: dict[str, Any] = {
        "settings": {"prompts_per_step": a.grpo_batch // a.grpo_generations,
                     "completions_per_step": a.grpo_batch,
                     "num_generations": a.grpo_generations,
                     "max_completion_length": a.grpo_completion_len,
                     "prompt_words": a.grpo_prompt_len, "rollouts": "transformers generate",
                     "reward": "length-based (same function on both sides)"},
        "step_ratio_goal": STEP_RATIO_GOAL}
    skip_ours = ours_importable("stages.rl")
    for name, is_ours in (("ours", True), ("trl_bare", False)):
        if is_ours and skip_ours:
            out[name] = {"skipped": skip_ours}
            continue
        try:
            free_memory()
            durs = grpo_run(a, cfg, dtype, device, is_ours)
            out[name] = {"step_seconds": stats(durs), "peak_memory_gib": peak_mem_gib()}
        except Exception as exc:
            out[name] = {"error": error_text(exc)}
        print(f"grpo/{name}: {out[name].get('step_seconds', out[name])}", flush=True)
    free_memory()
    return out


# --------------------------------------------------------------------------- vLLM


def bench_vllm(a: argparse.Namespace, device: str) -> dict[str, Any]:
    if a.dry_run or device != "cuda":
        return {"skipped": "dry run" if a.dry_run else "no CUDA device"}
    why = missing("vllm")
    if why:
        return {"skipped": why}
    import torch

    cfg = model_config(a.model_size, a.seq_len, a.attn)
    cfg.use_cache = True
    rng = random.Random(2)
    prompts = [" ".join(f"w{rng.randrange(len(SPECIALS), cfg.vocab_size)}"
                        for _ in range(a.grpo_prompt_len)) for _ in range(a.vllm_prompts)]
    out: dict[str, Any] = {"settings": {"prompts": a.vllm_prompts, "n": a.vllm_n,
                                        "max_new_tokens": a.vllm_tokens, "temperature": 1.0},
                           "ratio_goal": GEN_RATIO_GOAL}
    with scratch_dir("polya-bench-vllm-") as d:
        model = build_model(cfg, torch.bfloat16, "cuda")
        model.save_pretrained(d)
        build_tokenizer(cfg.vocab_size).save_pretrained(d)
        del model
        free_memory()
        skip_ours = ours_importable("backends.vllm")
        try:
            from vllm import LLM, SamplingParams

            gen = None
            if skip_ours:
                llm = LLM(model=str(d), dtype="bfloat16", seed=0,
                          gpu_memory_utilization=a.vllm_memory)
                out["ours"] = {"skipped": skip_ours}
            else:
                from polya_trainer.backends import Sampling, load_generator
                from polya_trainer.spec import ModelSpec

                gen = load_generator("vllm", ModelSpec(name=str(d), dtype="bfloat16"), gpus=1,
                                     gpu_memory_utilization=a.vllm_memory)
                llm = gen.llm
            params = SamplingParams(n=a.vllm_n, temperature=1.0, max_tokens=a.vllm_tokens,
                                    seed=1, ignore_eos=True)

            def bare() -> int:
                res = llm.generate(prompts, params, use_tqdm=False)
                return sum(len(o.token_ids) for r in res for o in r.outputs)

            fns: dict[str, Callable[[], int]] = {"bare": bare}
            if gen is not None:
                sampling = Sampling(n=a.vllm_n, temperature=1.0, top_p=1.0,
                                    max_new_tokens=a.vllm_tokens, seed=1)

                def ours() -> int:
                    return sum(c.num_tokens for g in gen.generate(prompts, sampling) for c in g)

                fns["ours"] = ours
            from common import alternate

            res = alternate(fns, a.reps, warmup=1, rate=lambda s, n: n / s)
            for k, v in res.items():
                out[k] = {"tokens_per_second": v}
            if gen is not None:
                gen.close()
        except Exception as exc:
            out["error"] = error_text(exc)
    free_memory()
    return out


# --------------------------------------------------------------------------- main


def figures(result: dict[str, Any]) -> list[dict[str, Any]]:
    figs: list[dict[str, Any]] = []
    sft = result.get("sft") or {}
    ours, bare, loop = (sft.get(k) or {} for k in ("ours", "trl_bare", "torch_loop"))
    size = sft.get("model", {}).get("size", "?")
    best = ours if ours.get("mfu") is not None else loop
    if best.get("mfu") is not None:
        who = "ours (midtrain config)" if best is ours else "bare torch loop"
        figs.append(figure(f"SFT MFU, Qwen2-style {size}, seq {sft.get('seq_len')}, bf16, {who}",
                           best["mfu"], loop.get("mfu") if best is ours else None, unit="MFU",
                           goal=MFU_GOAL, goal_op=">=", goal_on="ours",
                           note=sft.get("flops_formula", "")))
    if ours.get("tokens_per_second") and bare.get("tokens_per_second"):
        o, b = ours["step_seconds"], bare["step_seconds"]
        figs.append(figure(f"SFT step time, ours vs bare TRL SFTTrainer ({size})", o["median"],
                           b["median"], unit="s", goal=STEP_RATIO_GOAL, goal_op="<=",
                           goal_on="ratio", ours_range=[o["min"], o["max"]],
                           baseline_range=[b["min"], b["max"]]))
    grpo = result.get("grpo") or {}
    o, b = ((grpo.get(k) or {}).get("step_seconds") for k in ("ours", "trl_bare"))
    if o and b and o.get("median") and b.get("median"):
        figs.append(figure(f"GRPO step time, ours vs bare TRL GRPOTrainer ({size})",
                           o["median"], b["median"], unit="s", goal=STEP_RATIO_GOAL,
                           goal_op="<=", goal_on="ratio", ours_range=[o["min"], o["max"]],
                           baseline_range=[b["min"], b["max"]]))
    vl = result.get("vllm") or {}
    o, b = ((vl.get(k) or {}).get("tokens_per_second") for k in ("ours", "bare"))
    if o and b:
        figs.append(figure("vLLM generation tokens/s, ours vs bare LLM.generate", o["median"],
                           b["median"], unit="tokens/s", goal=GEN_RATIO_GOAL, goal_op=">=",
                           goal_on="ratio", ours_range=[o["min"], o["max"]],
                           baseline_range=[b["min"], b["max"]]))
    return figs


def skipped(result: dict[str, Any]) -> dict[str, str]:
    out = {}
    for part in ("sft", "grpo", "vllm"):
        sec = result.get(part) or {}
        if "skipped" in sec or "error" in sec:
            out[part] = sec.get("skipped") or sec.get("error")
        for k, v in sec.items():
            if isinstance(v, dict) and ("skipped" in v or "error" in v):
                out[f"{part}/{k}"] = v.get("skipped") or v.get("error")
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true",
                    help="tiny config on CPU, few steps (checks that the script runs)")
    ap.add_argument("--model-size", choices=sorted(SIZES), default=None, help="default 1.5b")
    ap.add_argument("--seq-len", type=int, default=None, help="default 2048")
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps per run (20)")
    ap.add_argument("--warmup", type=int, default=None, help="step intervals dropped (3)")
    ap.add_argument("--micro-batch", type=int, default=None, help="SFT micro-batch (4)")
    ap.add_argument("--grad-ckpt", action="store_true", help="gradient checkpointing on")
    ap.add_argument("--weights-dtype", choices=("bfloat16", "float32"), default="bfloat16",
                    help="dtype of the trained weights on CUDA (float32: master weights under "
                         "bf16 autocast, as the training stages hold them); CPU: float32")
    ap.add_argument("--attn", default="sdpa", help="sdpa, flash_attention_2, eager")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="dense bf16 peak of the GPU, when its name is not known here")
    ap.add_argument("--parts", default="sft,grpo,vllm")
    ap.add_argument("--sft-variants", default="torch_loop,ours,trl_bare")
    ap.add_argument("--grpo-batch", type=int, default=None, help="completions per step (16)")
    ap.add_argument("--grpo-generations", type=int, default=None, help="per prompt (8)")
    ap.add_argument("--grpo-completion-len", type=int, default=None, help="(256)")
    ap.add_argument("--grpo-prompt-len", type=int, default=64, help="prompt words")
    ap.add_argument("--vllm-prompts", type=int, default=64)
    ap.add_argument("--vllm-n", type=int, default=8)
    ap.add_argument("--vllm-tokens", type=int, default=256)
    ap.add_argument("--vllm-memory", type=float, default=0.6)
    ap.add_argument("--reps", type=int, default=3, help="vLLM repetitions")
    ap.add_argument("--out", type=Path, default=None, help="default bench/results/gpu.json "
                    "(.cache/bench/gpu-dry-run.json with --dry-run)")
    a = ap.parse_args(argv)
    full = {"model_size": "1.5b", "seq_len": 2048, "steps": 20, "warmup": 3, "micro_batch": 4,
            "grpo_batch": 16, "grpo_generations": 8, "grpo_completion_len": 256}
    dry = {"model_size": "tiny", "seq_len": 64, "steps": 3, "warmup": 1, "micro_batch": 2,
           "grpo_batch": 4, "grpo_generations": 2, "grpo_completion_len": 8}
    for k, v in (dry if a.dry_run else full).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.dry_run:
        a.grpo_prompt_len = min(a.grpo_prompt_len, 8)
    a.parts = {p.strip() for p in a.parts.split(",") if p.strip()}
    a.sft_variants = {p.strip() for p in a.sft_variants.split(",") if p.strip()}
    if a.steps < 2:
        ap.error("--steps must be at least 2 (step times are intervals between steps)")
    if a.grpo_batch % a.grpo_generations:
        ap.error("--grpo-batch must be a multiple of --grpo-generations")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if a.dry_run:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # CPU, whatever the machine has
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    peak = peak_flops(name, a.peak_tflops) if device == "cuda" else None
    settings = {k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(a).items()
                if k != "out"}
    result: dict[str, Any] = {
        "benchmark": "gpu", "dry_run": a.dry_run, "device": name, "settings": settings,
        "machine": machine_info(),
        "versions": package_versions(("torch", "transformers", "accelerate", "trl", "datasets",
                                      "vllm", "flash-attn", "pydantic", "polyarun")),
        "cuda": torch.version.cuda, "peak_bf16_flops": peak,
    }
    if device == "cuda" and peak is None:
        result["notes"] = [f"peak FLOP/s of {name!r} unknown: pass --peak-tflops for MFU"]
    if not a.dry_run and device != "cuda":
        result.setdefault("notes", []).append("no CUDA device: figures are CPU figures")
    t0 = time.perf_counter()
    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "sft": lambda: bench_sft(a, device, peak), "grpo": lambda: bench_grpo(a, device),
        "vllm": lambda: bench_vllm(a, device)}
    for part, run in runners.items():
        if part not in a.parts:
            result[part] = {"skipped": "not selected (--parts)"}
            continue
        try:
            result[part] = run()
        except Exception as exc:
            result[part] = {"error": error_text(exc)}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["figures"] = figures(result)
    result["skipped"] = skipped(result)
    default = (ROOT / ".cache" / "bench" / "gpu-dry-run.json" if a.dry_run
               else ROOT / "bench" / "results" / "gpu.json")
    path = write_result("gpu", result, a.out or default)
    for f in result["figures"]:
        print(f"{f['name']}: ours {f['ours']} baseline {f['baseline']} ratio {f['ratio']} "
              f"met {f['met']}")
    print(f"wrote {path} ({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
