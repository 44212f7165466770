"""Stage 2, mid-training: TRL ``SFTTrainer`` on the generate stage's accepted samples.

Input: parquet shards in ``Workspace.generated_data(arm)`` (columns ``question``,
``completion``, ``prompt_messages`` (JSON chat messages used to generate), ...), complete
only when the generate stage's manifest is. The star arm reads its own STaR data the same way.

Rows become conversational prompt/completion pairs: the prompt is the plain question
(``heuristics.plain_messages``, the same prompt RL and evaluation use) or, with
``keepHeuristicPrompt``, the heuristic messages the sample was generated from. The loss
covers the completion only (``completion_only_loss``). Full fine-tune by default; with
``lora`` a peft adapter, merged into the weights at the end when ``lora.merge``.

Schedule: cosine with 3% warm-up; checkpoints every ``saveSteps`` and on SIGTERM; resumes
from the newest complete checkpoint (see :mod:`polya_trainer.stages.training`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from polya_trainer.backends.models import load_causal_lm, load_tokenizer
from polya_trainer.data.prompts import CHAT_TEMPLATE_KWARGS
from polya_trainer.runtime import tracking
from polya_trainer.runtime.artifacts import is_complete
from polya_trainer.runtime.progress import Reporter
from polya_trainer.runtime.workspace import RunDir, Workspace
from polya_trainer.spec import MidtrainSpec, PolyaRunSpec
from polya_trainer.stages import training as T

log = logging.getLogger(__name__)
STAGE = "midtrain"


def data_files(workdir: RunDir, arm: str) -> list[str]:
    """The generate stage's parquet shards for `arm` (the stage must be complete)."""
    ws = Workspace.of(workdir)
    gen = ws.stage(arm, "generate")
    if not is_complete(gen):
        raise FileNotFoundError(f"generated data for arm {arm!r} not found (no complete "
                                f"manifest in {gen}); run the generate stage first")
    files = sorted(str(p) for p in ws.generated_data(arm).glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"the generate stage of arm {arm!r} wrote no parquet shards "
                                f"under {ws.generated_data(arm)}")
    return files


def _messages(raw: Any, row: int) -> list[dict[str, str]]:
    msgs = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(msgs, list) or not msgs or msgs[-1].get("role") != "user":
        raise ValueError(f"generated row {row}: prompt_messages must be a JSON list of chat "
                         "messages ending with the user's question")
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in msgs]


def to_example(row: dict[str, Any], index: int, keep_heuristic_prompt: bool) -> dict[str, Any]:
    """One conversational prompt/completion example from a generated row."""
    from polya_trainer.data.heuristics import plain_messages

    if keep_heuristic_prompt:
        if not row.get("prompt_messages"):
            raise ValueError(f"generated row {index} has no prompt_messages; "
                             "keepHeuristicPrompt needs them")
        prompt = _messages(row["prompt_messages"], index)
    else:
        prompt = plain_messages(str(row["question"]))
    # TRL's SFTTrainer passes a row's chat_template_kwargs to apply_chat_template: the pinned
    # template date (prompts.CHAT_TEMPLATE_KWARGS), as generate, rl and evaluate render it.
    return {"prompt": prompt,
            "completion": [{"role": "assistant", "content": str(row["completion"])}],
            "chat_template_kwargs": dict(CHAT_TEMPLATE_KWARGS)}


def heuristic_prefix(spec: PolyaRunSpec, arm: str) -> list[str] | None:
    """The ids of the first ``midtrain.heuristicsCount`` heuristics generate used (None: all)."""
    from polya_trainer.data.heuristics import select

    n = spec.stages.midtrain.heuristics_count
    if n is None or arm != "polya":  # the star arm's data has no heuristics
        return None
    ids = [h.id for h in select(spec.heuristics)]
    if n > len(ids):
        raise ValueError(f"stages.midtrain.heuristicsCount is {n} but generate used only "
                         f"{len(ids)} heuristics")
    return ids[:n]


def load_examples(workdir: RunDir, arm: str, cfg: MidtrainSpec,
                  heuristics: list[str] | None = None) -> Any:
    """The SFT dataset (a `datasets.Dataset` of prompt/completion message lists), from the
    samples of `heuristics` only when given."""
    from datasets import Dataset, load_dataset

    raw = load_dataset("parquet", data_files=data_files(workdir, arm), split="train")
    for col in ("question", "completion", *(("heuristic",) if heuristics else ())):
        if col not in raw.column_names:
            raise ValueError(f"generated data of arm {arm!r} lacks column {col!r} "
                             f"(columns: {', '.join(raw.column_names)})")
    if heuristics:
        keep = set(heuristics)
        raw = raw.filter(lambda row: row["heuristic"] in keep)
    if len(raw) == 0:
        raise ValueError(f"generated data of arm {arm!r} has no rows: nothing to mid-train on")
    rows = [to_example(r, i, cfg.keep_heuristic_prompt) for i, r in enumerate(raw)]
    return Dataset.from_list(rows)


def sft_config(spec: PolyaRunSpec, output_dir: str | Path) -> Any:
    """The SFTConfig for the spec (our values, device arguments, validated trainerArgs)."""
    from trl import SFTConfig

    cfg = spec.stages.midtrain
    user = T.validate_trainer_args(STAGE, cfg.trainer_args, SFTConfig, T.SFT_PROTECTED)
    ours: dict[str, Any] = {
        "output_dir": str(output_dir),
        "num_train_epochs": cfg.epochs,
        "max_steps": cfg.max_steps or -1,
        "learning_rate": cfg.learning_rate,
        "per_device_train_batch_size": cfg.per_device_batch_size,
        "gradient_accumulation_steps": cfg.accumulation(T.world_size()),
        "max_length": cfg.max_length,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0.03,  # a float below 1 is a ratio of the total steps
        "save_strategy": "steps",
        "save_steps": cfg.save_steps,
        "save_total_limit": 2,
        "logging_steps": 1,
        "seed": spec.seed,
        "completion_only_loss": True,
        "report_to": tracking.report_to(),
        "disable_tqdm": True,
        **T.device_args(spec.model, lora=cfg.lora is not None),
    }
    return T.build_config(STAGE, SFTConfig, ours, user)


def lora_config(cfg: MidtrainSpec) -> Any:
    from peft import LoraConfig

    assert cfg.lora is not None
    targets: Any = cfg.lora.target_modules
    if targets == ["all-linear"]:
        targets = "all-linear"
    return LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=targets, task_type="CAUSAL_LM")


def build_trainer(spec: PolyaRunSpec, arm: str, workdir: RunDir, reporter: Reporter,
                  flag: T.StopFlag | None = None, callbacks: list[Any] | None = None,
                  ) -> tuple[Any, Any, Any]:
    """(SFTTrainer, tokenizer, our callback) ready to train."""
    from trl import SFTTrainer

    cfg = spec.stages.midtrain
    ws = Workspace.of(workdir)
    args = sft_config(spec, ws.checkpoints(arm, STAGE))
    dataset = load_examples(ws, arm, cfg, heuristic_prefix(spec, arm))
    tok = load_tokenizer(spec.model)
    if not getattr(tok, "chat_template", None):
        raise ValueError(f"the tokenizer of {spec.model.name!r} has no chat template; "
                         "mid-training formats prompts as chat messages")
    model = load_causal_lm(T.training_model_spec(spec.model, lora=cfg.lora is not None))
    callback = T.make_callback(reporter, flag)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tok,
                         peft_config=lora_config(cfg) if cfg.lora else None,
                         callbacks=[callback, *(callbacks or [])])
    return trainer, tok, callback


def run(spec: PolyaRunSpec, arm: str, workdir: RunDir, reporter: Reporter,
        *, callbacks: list[Any] | None = None) -> dict[str, str]:
    """Mid-train `arm`'s model on its generated data; write the model and the manifest."""
    if arm == "vanilla":
        raise ValueError("the vanilla arm has no midtrain stage")
    cfg = spec.stages.midtrain
    ws = Workspace.of(workdir)
    with T.sigterm_flag() as flag:
        trainer, tok, callback = build_trainer(spec, arm, ws, reporter, flag, callbacks)
        result, resumed = T.train(trainer, ws.checkpoints(arm, STAGE), callback)
    metrics = T.summary(result, trainer, callback, resumed)
    metrics["examples"] = len(trainer.train_dataset)
    merge = bool(cfg.lora and cfg.lora.merge)
    T.save_final_model(trainer, tok, ws, arm, STAGE, merge_lora=merge,
                       base_model=spec.model.name, lora=bool(cfg.lora))
    return T.finish_stage(ws, arm, STAGE, metrics)
