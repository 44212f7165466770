"""Stage 3, RL: TRL ``GRPOTrainer`` with a verifiable math reward.

Starts from ``models.rl_start_model`` (the mid-trained model, or the base model for the
vanilla arm). Prompts are the plain question (``heuristics.plain_messages``), the same
prompt evaluation uses: the bare problem and one answer format, ``\\boxed{}``. DAPO-Math-17k's
own wrapper ("The last line of your response should be of the form Answer: $Answer ...") is
removed when the data are loaded (``loading.question_text``), so no prompt asks for two
formats. Rewards:

* ``correct``: 1.0 when ``answers.check(completion, gold)`` is correct else 0.0. Any explicit
  final answer counts (``\\boxed{}``, ``#### n``, ``Answer: x``, "the (final) answer is x"), so
  a model that keeps DAPO's ``Answer:`` line is not punished for its format;
  ``spec.answers.lastNumberFallback`` switches to ``fallback_correctness_reward``, which also
  credits the last number. Each call logs, through TRL's ``log_metric``, the share of
  completions per extraction method (``answers/boxed``, ``answers/answer_line``, ...,
  ``answers/none``: no extractable answer); they land in every step's log, the stage's
  progress gets ``no_answer_rate`` and the stage's metrics their first, last and mean values,
  per arm, so a difference in answer format between arms shows in the numbers;
* ``boxed`` (only when ``formatReward > 0``): 1.0 when the completion has a ``\\boxed{}``
  answer, weighted by ``formatReward`` through ``reward_weights``.

Paper defaults come from the spec (16 generations, beta 0, loss "dapo", group-scaled
rewards). The generation batch (``perDeviceBatchSize`` x processes x steps per generation)
must be divisible by ``numGenerations``; this is checked up front with the spec's field names.

Rollouts use vLLM (``use_vllm=True, vllm_mode="colocate"``: the engine shares the training
processes and GPUs) when ``spec.stages.generate.backend`` is ``vllm`` (the run's statement of
which engine its image carries), else transformers' ``generate``; trainerArgs may set
``use_vllm``/``vllm_mode`` explicitly. When vLLM is asked for and cannot be imported the stage
fails with InvalidConfig (``models.require_engine``); it never falls back silently.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from polya_trainer.backends.models import (
    load_causal_lm,
    load_tokenizer,
    require_engine,
    rl_start_model,
    vllm_field,
)
from polya_trainer.data.loading import load_qa
from polya_trainer.data.prompts import CHAT_TEMPLATE_KWARGS
from polya_trainer.runtime import tracking
from polya_trainer.runtime.progress import Reporter
from polya_trainer.runtime.workspace import RunDir, Workspace
from polya_trainer.spec import PolyaRunSpec, SpecError
from polya_trainer.stages import training as T
from polya_trainer.verify.answers import METHODS, check, extraction_counts, has_boxed

log = logging.getLogger(__name__)
STAGE = "rl"


def _text(completion: Any) -> str:
    """A completion as text (conversational completions are lists of messages)."""
    if isinstance(completion, list):
        return "".join(str(m.get("content", "")) for m in completion if isinstance(m, dict))
    return str(completion)


NO_ANSWER = "answers/none"
"""The logged share of completions with no extractable answer."""


def _rewards(completions: list[Any], answer: list[str], allow_fallback: bool,
             log_metric: Callable[[str, float], None] | None) -> list[float]:
    verdicts = [check(_text(c), str(a), allow_fallback=allow_fallback)
                for c, a in zip(completions, answer, strict=True)]
    if log_metric is not None and verdicts:
        for method, n in extraction_counts(verdicts).items():
            log_metric(f"answers/{method}", n / len(verdicts))
    return [1.0 if v.correct else 0.0 for v in verdicts]


def correctness_reward(completions: list[Any], answer: list[str],
                       log_metric: Callable[[str, float], None] | None = None,
                       **_: Any) -> list[float]:
    """1.0 for a verified correct final answer, else 0.0."""
    return _rewards(completions, answer, False, log_metric)


def fallback_correctness_reward(completions: list[Any], answer: list[str],
                                log_metric: Callable[[str, float], None] | None = None,
                                **_: Any) -> list[float]:
    """Like ``correctness_reward``, also crediting the last number (opt-in)."""
    return _rewards(completions, answer, True, log_metric)


def answer_rates(log_history: list[dict[str, Any]]) -> dict[str, Any]:
    """First, last and mean share of each extraction method over the logged steps (TRL's log
    history), and the no-answer share step by step."""
    out: dict[str, Any] = {}
    for method in METHODS:
        seq = [float(h[f"answers/{method}"]) for h in log_history if f"answers/{method}" in h]
        if seq:
            out[method] = {"first": seq[0], "last": seq[-1], "mean": sum(seq) / len(seq)}
    if "none" not in out:
        return {}
    none = out["none"]
    return {"no_answer_rate_first": none["first"], "no_answer_rate_last": none["last"],
            "no_answer_rate_mean": none["mean"], "answer_formats": out,
            "no_answer_rates": [float(h[NO_ANSWER]) for h in log_history if NO_ANSWER in h]}


TRUNCATED = "completions/truncated_zeroed"
"""The logged share of completions given 0 for being cut off by maxCompletionLength."""


Reward = Callable[..., list[float]]


def whole_only(reward: Reward, stops: set[int]) -> Reward:
    """`reward`, with 0 for a completion cut off by maxCompletionLength: one whose last token is
    neither an end-of-sequence nor the pad token, TRL's own test of truncation
    (GRPOTrainer._generate_and_score_completions, trl 1.16). The share is logged."""

    @functools.wraps(reward)
    def scored(completions: list[Any], completion_ids: list[list[int]] | None = None,
               log_metric: Callable[[str, float], None] | None = None,
               **kw: Any) -> list[float]:
        rewards = reward(completions, log_metric=log_metric, **kw)
        if completion_ids is None:
            return rewards
        cut = [not ids or ids[-1] not in stops for ids in completion_ids]
        if log_metric is not None and cut:
            log_metric(TRUNCATED, sum(cut) / len(cut))
        return [0.0 if c else r for r, c in zip(rewards, cut, strict=True)]

    return scored


def stop_ids(tok: Any, model: Any) -> set[int]:
    """The token ids that end a completion: the tokenizer's EOS and pad, and the model's
    generation config's EOS list (what TRL's GRPOTrainer stops sampling at)."""
    ids = {tok.eos_token_id, tok.pad_token_id}
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids |= set(eos) if isinstance(eos, list) else {eos}
    return {i for i in ids if isinstance(i, int)}


def format_reward(completions: list[Any], **_: Any) -> list[float]:
    """1.0 when the completion gives its answer in \\boxed{}."""
    return [1.0 if has_boxed(_text(c)) else 0.0 for c in completions]


def reward_setup(spec: PolyaRunSpec) -> tuple[list[Any], list[float]]:
    """Reward functions and their weights."""
    weight = spec.stages.rl.format_reward
    correct = (fallback_correctness_reward if spec.answers.last_number_fallback
               else correctness_reward)
    if weight > 0:
        return [correct, format_reward], [1.0, float(weight)]
    return [correct], [1.0]


def use_vllm(spec: PolyaRunSpec) -> bool:
    """vLLM rollouts when the run chose the vllm backend; a SpecError (InvalidConfig) when it
    did and vllm cannot be imported, never a silent switch to the far slower HF generate."""
    require_engine(spec, STAGE)
    return vllm_field(spec, STAGE) is not None


def rollout_plan(spec: PolyaRunSpec, user: dict[str, Any], processes: int) -> dict[str, int]:
    """The rollout/update batch arithmetic in TRL's terms, checked with the spec's names.

    TRL samples ``generation_batch_size`` completions at once and spends them over
    ``steps_per_generation`` micro-steps of ``per_device_train_batch_size`` x processes
    completions; an optimizer update happens every ``gradient_accumulation_steps``
    micro-steps. With ``promptsPerRollout`` P and ``numGenerations`` G the rollout is P x G
    completions (verl's train_batch_size P, rollout.n G), and the update batch
    perDeviceBatchSize x processes x accumulation is verl's ppo_mini_batch_size x G.
    """
    cfg = spec.stages.rl
    micro = cfg.per_device_batch_size * processes
    accumulation = cfg.accumulation(processes)
    update = micro * accumulation
    if cfg.prompts_per_rollout:
        clash = sorted({"generation_batch_size", "steps_per_generation"} & set(user))
        if clash:
            raise SpecError([(f"spec.stages.rl.trainerArgs.{clash[0]}",
                              "may not be set with spec.stages.rl.promptsPerRollout")])
        gen = cfg.prompts_per_rollout * cfg.num_generations
        if gen % update:
            raise SpecError([("spec.stages.rl.promptsPerRollout",
                              f"a rollout of {cfg.prompts_per_rollout} prompts x "
                              f"{cfg.num_generations} generations = {gen} completions must "
                              f"split into whole updates of perDeviceBatchSize "
                              f"{cfg.per_device_batch_size} x {processes} process(es) x "
                              f"{accumulation} accumulation step(s) = {update} completions")])
    else:
        steps = int(user.get("steps_per_generation") or accumulation)
        gen = int(user.get("generation_batch_size") or micro * steps)
    if gen % cfg.num_generations:
        raise SpecError([("spec.stages.rl.perDeviceBatchSize",
                          f"the generation batch (perDeviceBatchSize {cfg.per_device_batch_size}"
                          f" x {processes} process(es) x {gen // max(micro, 1)} step(s) per "
                          f"generation = {gen}) must be divisible by "
                          f"spec.stages.rl.numGenerations ({cfg.num_generations})")])
    return {"generation_batch_size": gen, "steps_per_generation": gen // micro,
            "completions_per_update": update, "updates_per_rollout": gen // update,
            "prompts_per_rollout": gen // cfg.num_generations,
            "gradient_accumulation_steps": accumulation}


def check_batch(spec: PolyaRunSpec, user: dict[str, Any], processes: int) -> None:
    """The GRPO generation batch must hold whole groups of numGenerations completions."""
    rollout_plan(spec, user, processes)


def grpo_config(spec: PolyaRunSpec, output_dir: str | Path) -> Any:
    """The GRPOConfig for the spec (our values, device arguments, validated trainerArgs)."""
    from trl import GRPOConfig

    cfg = spec.stages.rl
    user = T.validate_trainer_args(STAGE, cfg.trainer_args, GRPOConfig, T.GRPO_PROTECTED)
    plan = rollout_plan(spec, user, T.world_size())
    _, weights = reward_setup(spec)
    ours: dict[str, Any] = {
        "output_dir": str(output_dir),
        "num_train_epochs": cfg.epochs,
        "max_steps": cfg.max_steps or -1,
        "learning_rate": cfg.learning_rate,
        "per_device_train_batch_size": cfg.per_device_batch_size,
        "gradient_accumulation_steps": plan["gradient_accumulation_steps"],
        "num_generations": cfg.num_generations,
        "max_completion_length": cfg.max_completion_length,
        "temperature": cfg.temperature,
        "beta": cfg.beta,
        "loss_type": "dapo",
        "scale_rewards": "group",
        "reward_weights": weights,
        "lr_scheduler_type": "constant_with_warmup",
        "save_strategy": "steps",
        "save_steps": cfg.save_steps,
        "save_total_limit": 2,
        "logging_steps": 1,
        "seed": spec.seed,
        "report_to": tracking.report_to(),
        "disable_tqdm": True,
        "use_vllm": use_vllm(spec),
        **({"generation_batch_size": plan["generation_batch_size"]}
           if cfg.prompts_per_rollout else {}),
        "vllm_mode": "colocate",
        "vllm_importance_sampling_correction": cfg.importance_sampling.correction,
        "vllm_importance_sampling_mode": cfg.importance_sampling.mode,
        "vllm_importance_sampling_clip_max": cfg.importance_sampling.cap,
        # The pinned template date (prompts.CHAT_TEMPLATE_KWARGS): rollouts see the prompt ids
        # generation and evaluation see.
        "chat_template_kwargs": dict(CHAT_TEMPLATE_KWARGS),
        **T.device_args(spec.model),
    }
    return T.build_config(STAGE, GRPOConfig, ours, user)


def load_prompts(spec: PolyaRunSpec, workdir: RunDir | None = None, arm: str = "polya",
                 reporter: Reporter | None = None) -> Any:
    """The RL dataset: chat prompts with the plain question, plus the gold answer. With a
    workdir, the questions are checked against the evaluation benchmarks first
    (spec.contamination; ``<arm>/rl/contamination.json``)."""
    from datasets import Dataset

    from polya_trainer.data import contamination
    from polya_trainer.data.heuristics import plain_messages

    rows = load_qa(spec.stages.rl.dataset, "spec.stages.rl.dataset")
    if workdir is not None:
        ws = Workspace.of(workdir)
        rows, _, contam = contamination.gate_questions(
            spec, "rl_questions", rows, ws.stage(arm, STAGE), ws.root)
        if contam and reporter is not None:
            reporter.update(contaminated_questions=contam["rl_questions"]["overlapping"])
        if not rows:
            raise SpecError([("spec.contamination", "every RL question overlaps an evaluation "
                                                    "benchmark; nothing left to train on")])
    return Dataset.from_list([{"prompt": plain_messages(r["question"]), "answer": r["answer"]}
                              for r in rows])


def build_trainer(spec: PolyaRunSpec, arm: str, workdir: RunDir, reporter: Reporter,
                  flag: T.StopFlag | None = None, callbacks: list[Any] | None = None,
                  ) -> tuple[Any, Any, Any]:
    """(GRPOTrainer, tokenizer, our callback) ready to train."""
    from trl import GRPOTrainer

    ws = Workspace.of(workdir)
    args = grpo_config(spec, ws.checkpoints(arm, STAGE))
    start = rl_start_model(spec, arm, ws)
    tok = load_tokenizer(spec.model, start)
    if not getattr(tok, "chat_template", None):
        raise ValueError(f"the tokenizer of {start!r} has no chat template; "
                         "RL formats prompts as chat messages")
    model = load_causal_lm(T.training_model_spec(spec.model), start)
    funcs, _ = reward_setup(spec)
    if not spec.stages.rl.score_truncated:  # the correctness reward scores whole ones only
        funcs[0] = whole_only(funcs[0], stop_ids(tok, model))
    callback = T.make_callback(reporter, flag)
    trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=args,
                          train_dataset=load_prompts(spec, ws, arm, reporter),
                          processing_class=tok,
                          callbacks=[callback, *(callbacks or [])])
    return trainer, tok, callback


def run(spec: PolyaRunSpec, arm: str, workdir: RunDir, reporter: Reporter,
        *, callbacks: list[Any] | None = None) -> dict[str, str]:
    """GRPO for `arm`; write the model and the manifest."""
    ws = Workspace.of(workdir)
    with T.sigterm_flag() as flag:
        trainer, tok, callback = build_trainer(spec, arm, ws, reporter, flag, callbacks)
        result, resumed = T.train(trainer, ws.checkpoints(arm, STAGE), callback)
    metrics = T.summary(result, trainer, callback, resumed)
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    if rewards:
        metrics.update(reward_mean_first=rewards[0], reward_mean_last=rewards[-1],
                       reward_mean=sum(rewards) / len(rewards), rewards=rewards)
    metrics.update(answer_rates(trainer.state.log_history))
    metrics["use_vllm"] = bool(trainer.args.use_vllm)
    T.save_final_model(trainer, tok, ws, arm, STAGE, start_model=rl_start_model(spec, arm, ws))
    return T.finish_stage(ws, arm, STAGE, metrics)
