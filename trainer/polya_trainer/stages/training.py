"""What the two training stages (midtrain = SFT, rl = GRPO) share.

* **trainerArgs validation** against the real ``SFTConfig``/``GRPOConfig`` dataclass fields:
  unknown keys are refused with the field path and close matches; keys the stage derives from
  the spec (``PROTECTED``) are refused with the spec field to use instead. Keys in
  ``OVERRIDABLE`` are defaults we choose and a user may change.
* **Device arguments and precision** (:func:`precision_plan`): CPU gets ``use_cpu``, float32,
  no bf16, no gradient checkpointing, no pinned memory (TRL defaults to bf16 and gradient
  checkpointing). On a GPU a full fine-tune loads float32 master weights and computes under
  bf16 autocast (fp16 where bf16 is unsupported), so AdamW's state and updates stay float32;
  several GPUs shard weights, gradients and optimizer state with FSDP
  (:func:`sharding_args`). LoRA keeps half-precision frozen weights and float32 adapters.
* **Checkpoints**: HF Trainer's own ``checkpoint-N`` directories under
  ``Workspace.checkpoints(arm, stage)``. The Trainer writes ``trainer_state.json`` last but
  not atomically, so after each save :class:`StageCallback` also writes a marker
  (``MARKER``) atomically; a checkpoint counts only with the marker and a parseable state
  whose ``global_step`` matches its name. A rerun resumes from the newest complete one and
  removes newer incomplete ones.
* **SIGTERM** (Kubernetes preemption, eviction, ``kubectl delete``): the handler only sets a
  flag; at the end of the current optimizer step the callback asks the Trainer to save a
  checkpoint and stop. The stage then reports state ``Suspended`` and exits with code 143
  (128 + SIGTERM), the code the pod would have had if the signal had killed it, so the Job
  sees a failed pod (the operator's podFailurePolicy treats disruptions as not counting
  against backoffLimit) and the next attempt resumes from that checkpoint. When that step is
  the last one, the stage finishes instead (saves the final model, exits 0): a checkpoint
  would cost as much as the final save, and its rerun would train nothing. Under several
  processes the flag is all-reduced each step so every rank stops at the same step.
  torchrun gives its workers 30 s after forwarding SIGTERM before it kills them; set the
  pod's ``terminationGracePeriodSeconds`` above one step plus one checkpoint save.
* **Step hooks** (:mod:`polya_trainer.runtime.hold`, off unless set): a stage can be held at
  the end of a chosen optimizer step (before that step's checkpoint) or slowed at every step,
  so tests interrupt it at a point they control on a machine of any speed.
* **Progress**: :class:`StageCallback` feeds the shared
  :class:`~polya_trainer.runtime.progress.Reporter` (step/total, loss, learning rate, epoch,
  reward mean/std, tokens/s).
* **Final model**: written in HF format to a temporary sibling directory, with the tokenizer
  and a manifest, then renamed to ``Workspace.model(arm, stage)`` (so ``is_complete``
  holds only for a whole model).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import logging
import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from polya_trainer.runtime import hold, storage
from polya_trainer.runtime.artifacts import atomic_write_json, write_manifest
from polya_trainer.runtime.checkpoints import MARKER as MARKER  # re-exported
from polya_trainer.runtime.checkpoints import (
    checkpoint_step,
    mark_checkpoint,
    newest_checkpoint,
    prune_incomplete,
)
from polya_trainer.runtime.progress import Reporter
from polya_trainer.runtime.workspace import Workspace
from polya_trainer.spec import ModelSpec, SpecError

log = logging.getLogger(__name__)

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM
METRICS_FILE = "metrics.json"

# Config fields the stage sets from spec fields: trainerArgs may not set them.
COMMON_PROTECTED: dict[str, str] = {
    "output_dir": "the stage writes checkpoints under <workdir>/<arm>/<stage>/checkpoints",
    "num_train_epochs": "epochs",
    "learning_rate": "learningRate",
    "per_device_train_batch_size": "perDeviceBatchSize",
    "gradient_accumulation_steps": "gradientAccumulationSteps",
    "max_steps": "maxSteps",
    "save_steps": "saveSteps",
    "save_strategy": "saveSteps (checkpoints are how a preempted stage resumes)",
    "seed": "spec.seed",
    "resume_from_checkpoint": "nothing: the stage resumes from its newest checkpoint itself",
    "use_cpu": "nothing: it follows the hardware",
    "push_to_hub": "nothing: the model is written to the workspace",
}
SFT_PROTECTED: dict[str, str] = {**COMMON_PROTECTED, "max_length": "maxLength"}
GRPO_PROTECTED: dict[str, str] = {
    **COMMON_PROTECTED,
    "num_generations": "numGenerations",
    "beta": "beta",
    "max_completion_length": "maxCompletionLength",
    "temperature": "temperature",
    "reward_weights": "formatReward",
    "vllm_importance_sampling_correction": "importanceSampling.correction",
    "vllm_importance_sampling_mode": "importanceSampling.mode",
    "vllm_importance_sampling_clip_max": "importanceSampling.cap",
    "vllm_importance_sampling_cap": "importanceSampling.cap",
}
# Defaults we choose that trainerArgs may override (documented in the README).
OVERRIDABLE = ("lr_scheduler_type", "warmup_steps", "logging_steps",
               "save_total_limit", "bf16", "fp16", "gradient_checkpointing",
               "dataloader_pin_memory", "report_to", "completion_only_loss", "loss_type",
               "scale_rewards", "use_vllm", "vllm_mode", "vllm_gpu_memory_utilization",
               "fsdp", "fsdp_config")


class Preempted(SystemExit):
    """Raised after the SIGTERM checkpoint is saved; exits the process with code 143."""

    def __init__(self, step: int):
        super().__init__(PREEMPTED_EXIT_CODE)
        self.step = step


# --------------------------------------------------------------------------- config


def config_fields(config_cls: type) -> set[str]:
    """Init fields of a TRL/transformers config dataclass."""
    return {f.name for f in dataclasses.fields(config_cls) if f.init and not f.name.startswith("_")}


def _type_ok(default: Any, value: Any) -> bool:
    """A cheap type check against a field's scalar default (dataclasses do not check)."""
    if value is None or default is None or isinstance(default, (list, dict, tuple)):
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    return True


def validate_trainer_args(stage: str, args: dict[str, Any], config_cls: type,
                          protected: dict[str, str]) -> dict[str, Any]:
    """Check `spec.stages.<stage>.trainerArgs` against the real config fields.

    Raises SpecError listing every bad key; returns a copy of the arguments.
    """
    fields = config_fields(config_cls)
    defaults = {f.name: f.default for f in dataclasses.fields(config_cls)
                if f.default is not dataclasses.MISSING}
    errors: list[tuple[str, str]] = []
    for key in sorted(args):
        path = f"spec.stages.{stage}.trainerArgs.{key}"
        if key in protected:
            where = protected[key]
            hint = (f"set spec.stages.{stage}.{where} instead" if re.match(r"^[a-z]+[A-Za-z]*$",
                                                                          where)
                    else f"set by the stage ({where})")
            errors.append((path, f"may not be set here; {hint}"))
        elif key not in fields:
            close = difflib.get_close_matches(key, sorted(fields), n=3, cutoff=0.6)
            tip = f"; did you mean {' or '.join(close)}?" if close else ""
            errors.append((path, f"not a field of trl.{config_cls.__name__}{tip}"))
        elif not _type_ok(defaults.get(key), args[key]):
            errors.append((path, f"expected a {type(defaults[key]).__name__}, "
                                 f"got {args[key]!r}"))
    if errors:
        raise SpecError(errors)
    return dict(args)


def build_config(stage: str, config_cls: type, ours: dict[str, Any],
                 user: dict[str, Any]) -> Any:
    """The config object from our values plus validated trainerArgs (user wins on overlap)."""
    try:
        return config_cls(**{**ours, **user})
    except (TypeError, ValueError) as exc:
        keys = ", ".join(sorted(user)) or "none"
        raise SpecError([(f"spec.stages.{stage}",
                          f"trl.{config_cls.__name__} refused the configuration "
                          f"(trainerArgs keys: {keys}): {exc}")]) from exc


def cuda_bf16() -> tuple[bool, bool]:
    """(CUDA available, bf16 supported)."""
    import torch

    if not torch.cuda.is_available():
        return False, False
    return True, bool(torch.cuda.is_bf16_supported())


@dataclasses.dataclass(frozen=True)
class Precision:
    """How a training stage holds and computes its weights.

    ``load_dtype``: the dtype the trainable model is loaded in (the optimizer's master weights
    for a full fine-tune). ``bf16``/``fp16``: the Trainer's autocast (mixed precision) flags.
    """

    load_dtype: str
    bf16: bool
    fp16: bool


def precision_plan(dtype: str, *, lora: bool, cuda: bool, bf16_supported: bool) -> Precision:
    """Precision of a training stage (pure, so the GPU decision is testable anywhere).

    A full fine-tune keeps float32 master weights and computes under autocast: AdamW then
    keeps its state and applies its updates in float32, so a 1e-6 learning rate is not
    rounded away (a bf16 weight near 1 moves only in steps of 2^-8). ``spec.model.dtype``
    chooses the compute dtype: ``auto``/``bfloat16`` -> bf16 autocast where the GPU supports
    it, else fp16 autocast (with loss scaling); ``float32`` -> no autocast. A LoRA stage
    trains float32 adapters over frozen base weights, which may stay in the compute dtype.
    On CPU: float32 and no autocast.
    """
    if not cuda:
        keep = lora and dtype in ("bfloat16", "float32")
        return Precision(dtype if keep else "float32", False, False)
    if dtype == "float32":
        return Precision("float32", False, False)
    half = "bfloat16" if dtype in ("auto", "bfloat16") and bf16_supported else "float16"
    if lora:
        return Precision(half, half == "bfloat16", half == "float16")
    return Precision("float32", half == "bfloat16", half == "float16")


def stage_precision(model: ModelSpec, lora: bool = False) -> Precision:
    """:func:`precision_plan` on this machine's hardware."""
    cuda, bf16 = cuda_bf16()
    return precision_plan(model.dtype, lora=lora, cuda=cuda, bf16_supported=bf16)


def device_args(model: ModelSpec, lora: bool = False) -> dict[str, Any]:
    """Trainer arguments that depend on the hardware (and the precision plan)."""
    cuda, _ = cuda_bf16()
    if not cuda:
        return {"use_cpu": True, "bf16": False, "fp16": False, "gradient_checkpointing": False,
                "dataloader_pin_memory": False}
    plan = stage_precision(model, lora)
    return {"bf16": plan.bf16, "fp16": plan.fp16, **sharding_args(lora)}


def sharding_args(lora: bool, processes: int | None = None) -> dict[str, Any]:
    """FSDP (through the Trainer's accelerate integration) for multi-GPU full fine-tunes.

    Each rank then holds 1/N of the float32 weights, gradients and AdamW state (FULL_SHARD,
    one FSDP unit per decoder layer), which is what makes float32 master weights fit beside
    a colocated vLLM engine (docs/memory-plan.md). Activation checkpointing is FSDP's own
    (``fsdp_config.activation_checkpointing``), so the Trainer's gradient_checkpointing is
    off. Every rank loads the full float32 weights into host memory before FSDP shards them
    (``cpu_ram_efficient_loading`` off: 4 x 12.9 GB of host RAM for the 3B model), which
    avoids depending on meta-device loading and module-state broadcast.
    LoRA stages and single-process stages stay plain (DDP or one process).
    trainerArgs may override ``fsdp``/``fsdp_config`` (``fsdp: false`` turns it off).
    """
    n = world_size() if processes is None else processes
    if lora or n < 2:
        return {}
    return {"fsdp": True,
            "fsdp_config": {"version": 2, "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                            "reshard_after_forward": True,
                            "activation_checkpointing": True, "cpu_ram_efficient_loading": False,
                            "state_dict_type": "FULL_STATE_DICT"},
            "gradient_checkpointing": False}


def training_model_spec(model: ModelSpec, lora: bool = False) -> ModelSpec:
    """The model spec to load trainable weights with (see :func:`precision_plan`)."""
    return model.model_copy(update={"dtype": stage_precision(model, lora).load_dtype})


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0") or 0) == 0


# --------------------------------------------------------------------------- SIGTERM


class StopFlag:
    """Set by SIGTERM; checked by the callback at each step end."""

    def __init__(self) -> None:
        self.set = False
        self.signum: int | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        self.set = True
        self.signum = signum
        log.warning("received signal %s: saving a checkpoint at the end of this step", signum)


@contextlib.contextmanager
def sigterm_flag() -> Iterator[StopFlag]:
    """Install a SIGTERM handler that only sets a flag (main thread only)."""
    flag = StopFlag()
    try:
        previous = signal.signal(signal.SIGTERM, flag)
    except ValueError:  # not the main thread: leave signals alone
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


def _flag_everywhere(local: bool) -> bool:
    """OR of the flag over all ranks, so every process stops at the same step."""
    try:
        import torch
        import torch.distributed as dist
    except ImportError:  # pragma: no cover
        return local
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local
    device = "cuda" if torch.cuda.is_available() and dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([1 if local else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


# --------------------------------------------------------------------------- callback

# Our progress figures (runtime/progress.py FIGURES: also Prometheus and tracking) from the
# Trainer's logs. The GRPO ones are what trl 1.16's GRPOTrainer logs per step.
LOGGED = (
    ("loss", "loss"), ("learning_rate", "learning_rate"), ("epoch", "epoch"),
    ("reward_mean", "reward"), ("reward_std", "reward_std"),
    ("no_signal_share", "frac_reward_zero_std"),  # groups whose rewards are all equal
    ("rl_truncation_rate", "completions/clipped_ratio"),
    ("completion_length", "completions/mean_length"),
    ("entropy", "entropy"), ("kl", "kl"),
    ("is_ratio_mean", "sampling/importance_sampling_ratio/mean"),
    ("is_ratio_min", "sampling/importance_sampling_ratio/min"),
    ("is_ratio_max", "sampling/importance_sampling_ratio/max"),
    ("no_answer_rate", "answers/none"), ("truncated_zeroed", "completions/truncated_zeroed"),
)


def _callback_base() -> type:
    from transformers import TrainerCallback

    return TrainerCallback


def make_callback(reporter: Reporter, flag: StopFlag | None = None) -> Any:
    """A TrainerCallback feeding `reporter` and honouring the SIGTERM `flag`."""
    base = _callback_base()

    class StageCallback(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            self.reporter = reporter
            self.flag = flag
            self.preempted_at: int | None = None
            self.start_step = 0
            self.steps_this_run = 0
            self.last_logs: dict[str, float] = {}
            self.first_logs: dict[str, float] = {}
            self._tokens: tuple[float, float] | None = None  # (num_tokens, time)

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.start_step = state.global_step
            if state.is_world_process_zero:
                self.reporter.start(total=state.max_steps, unit="steps",
                                    message=(f"resumed at step {state.global_step}"
                                             if state.global_step else ""))
                self.reporter.update(done=state.global_step, step=state.global_step)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            self.steps_this_run += 1
            if state.is_world_process_zero:
                hold.unit_done(state.global_step, lambda: bool(self.flag and self.flag.set))
            last = state.global_step >= state.max_steps  # SIGTERM now: finish the stage
            if self.flag is not None and not last and _flag_everywhere(self.flag.set):
                control.should_save = True
                control.should_training_stop = True
                self.preempted_at = state.global_step
            if state.is_world_process_zero:
                self.reporter.update(done=state.global_step)
            return control

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kw: Any) -> None:
            if not logs or not state.is_world_process_zero or "train_runtime" in logs:
                return
            figures: dict[str, float] = {}
            for ours, theirs in LOGGED:
                if isinstance(logs.get(theirs), (int, float)):
                    figures[ours] = float(logs[theirs])
            tokens = logs.get("num_tokens")
            now = time.monotonic()
            if isinstance(tokens, (int, float)):
                if self._tokens and now > self._tokens[1] and tokens >= self._tokens[0]:
                    figures["tokens_per_second"] = (tokens - self._tokens[0]) / (
                        now - self._tokens[1])
                self._tokens = (float(tokens), now)
            figures["step"] = float(state.global_step)
            snapshot = {k: float(v) for k, v in logs.items() if isinstance(v, (int, float))}
            if not self.first_logs:
                self.first_logs = dict(snapshot, step=state.global_step)
            self.last_logs = dict(snapshot, step=state.global_step)
            self.reporter.update(done=state.global_step, **figures)

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.is_world_process_zero:
                mark_checkpoint(args.output_dir, state.global_step)
                storage.checkpoint_saved(args.output_dir, state.global_step)  # storage.uri

    return StageCallback()


# --------------------------------------------------------------------------- running


def train(trainer: Any, ckpt_dir: Path, callback: Any) -> tuple[Any, int | None]:
    """Resume from the newest complete checkpoint (if any) and train.

    Returns (TrainOutput, resumed step or None). Raises Preempted after a SIGTERM save.
    """
    resume = newest_checkpoint(ckpt_dir)
    if is_main_process():
        for p in prune_incomplete(ckpt_dir):
            log.warning("removed incomplete checkpoint %s", p)
    resumed = checkpoint_step(resume) if resume else None
    if resume:
        log.info("resuming from %s", resume)
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if callback.preempted_at is not None:
        step = callback.preempted_at
        callback.reporter.finish(state="Suspended",
                                 message=f"SIGTERM: checkpoint-{step} saved; a rerun resumes")
        raise Preempted(step)
    if callback.flag is not None and callback.flag.set:
        log.warning("SIGTERM during the last step: finishing the stage instead of checkpointing")
    return result, resumed


def _barrier(trainer: Any) -> None:
    with contextlib.suppress(Exception):
        trainer.accelerator.wait_for_everyone()


def save_final_model(trainer: Any, tokenizer: Any, ws: Workspace, arm: str, stage: str,
                     merge_lora: bool = False, **meta: Any) -> Path:
    """Write the trained model (HF format, with tokenizer and manifest) atomically.

    Every rank takes part (sharded models need it); only the main process renames.
    """
    final = ws.model(arm, stage)
    tmp = final.parent / f".{final.name}.tmp"
    if trainer.is_world_process_zero() and tmp.exists():
        shutil.rmtree(tmp)
    _barrier(trainer)
    model = trainer.accelerator.unwrap_model(trainer.model)
    is_peft = hasattr(model, "peft_config")
    if is_peft and merge_lora:
        if trainer.is_world_process_zero():
            merged = model.merge_and_unload()
            merged.save_pretrained(tmp)
    else:
        trainer.save_model(str(tmp))
    _barrier(trainer)
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(tmp)
        for junk in ("training_args.bin", "README.md"):  # trainer leftovers, not the model
            with contextlib.suppress(FileNotFoundError):
                (tmp / junk).unlink()
        write_manifest(tmp, kind="model", stage=stage, arm=arm,
                       adapter=bool(is_peft and not merge_lora), **meta)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    _barrier(trainer)
    return final


def finish_stage(ws: Workspace, arm: str, stage: str, metrics: dict[str, Any]) -> dict[
        str, str]:
    """Write metrics.json and the stage manifest; return the stage outputs."""
    directory = ws.stage(arm, stage)
    outputs = {"model": ws.relative(ws.model(arm, stage)),
               "metrics": ws.relative(directory / METRICS_FILE)}
    if is_main_process():
        atomic_write_json(directory / METRICS_FILE, metrics)
        write_manifest(directory, files=[METRICS_FILE], outputs=outputs,
                       metrics={k: v for k, v in metrics.items()
                                if isinstance(v, (int, float)) and not isinstance(v, bool)})
    process_barrier()  # the other ranks return only once the manifest exists
    return outputs


def process_barrier() -> None:
    """Wait for every process of the stage (no-op without torch.distributed)."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover
        return
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def summary(result: Any, trainer: Any, callback: Any, resumed: int | None) -> dict[str, Any]:
    """Final figures of a training stage (metrics.json)."""
    out: dict[str, Any] = {
        "global_step": int(trainer.state.global_step),
        "train_loss": float(result.training_loss),
        "resumed_from_step": resumed,
        "steps_this_run": int(callback.steps_this_run),
        "processes": world_size(),
        "train_runtime": float(result.metrics.get("train_runtime", 0.0)),
        "first_log": callback.first_logs,
        "last_log": callback.last_logs,
    }
    return out
