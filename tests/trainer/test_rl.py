"""RL (stage 3): real TRL GRPOTrainer steps on CPU with the verified-correctness reward.

The reward test uses `toy_model_dir` (the tiny model pretrained on arithmetic word problems),
which answers a fair share of the problems correctly, so GRPO has signal to learn from.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from polya_trainer.runtime.artifacts import is_complete, read_manifest, write_manifest
from polya_trainer.runtime.progress import Reporter
from polya_trainer.runtime.workspace import Workspace
from polya_trainer.spec import AnswersSpec, PolyaRunSpec, SpecError
from polya_trainer.stages import rl


def make_spec(model_dir: Path, problems: Path, arms: list[str] | None = None,
              **stage: Any) -> PolyaRunSpec:
    generate = stage.pop("generate", {"backend": "hf"})
    rl_cfg = {"dataset": {"source": str(problems), **stage.pop("dataset", {})}, "numGenerations": 4,
              "perDeviceBatchSize": 8, "maxCompletionLength": 40, "learningRate": 5e-4,
              "saveSteps": 1000, "maxSteps": 2, **stage}
    return PolyaRunSpec.model_validate({
        "model": {"name": str(model_dir), "dtype": "float32"}, "arms": arms or ["vanilla"],
        "seed": 5, "stages": {"rl": rl_cfg, "generate": generate}})


def test_rewards_use_the_verifier() -> None:
    done = [[{"role": "assistant", "content": "3 + 4 = 7. The answer is \\boxed{7}."}],
            [{"role": "assistant", "content": "The answer is \\boxed{8}."}],
            [{"role": "assistant", "content": "it is 7"}]]
    # Only an explicit final answer is credited, unless the spec opts into the fallback.
    assert rl.correctness_reward(done, answer=["7", "7", "7"]) == [1.0, 0.0, 0.0]
    assert rl.fallback_correctness_reward(done, answer=["7", "7", "7"]) == [1.0, 0.0, 1.0]
    assert rl.format_reward(done) == [1.0, 1.0, 0.0]
    assert rl.correctness_reward(["\\boxed{1,000}"], answer=["1000"]) == [1.0]


def test_rewards_log_the_share_of_each_answer_format() -> None:
    """Each reward call logs, through TRL's log_metric, the share of completions per
    extraction method; the stage keeps them per step, its progress the no-answer rate."""

    logged: dict[str, float] = {}
    done = ["\\boxed{7}", "Answer: 7", "it is 7", "The answer is 8."]
    assert rl.correctness_reward(done, answer=["7"] * 4, log_metric=logged.__setitem__) == [
        1.0, 1.0, 0.0, 0.0]
    assert logged == {"answers/boxed": 0.25, "answers/gsm8k": 0.0, "answers/answer_line": 0.25,
                      "answers/answer_is": 0.25, "answers/last_number": 0.0,
                      "answers/none": 0.25}
    history = [{"answers/none": 0.5, "answers/boxed": 0.5, "loss": 1.0}, {"loss": 0.5},
               {"answers/none": 0.25, "answers/boxed": 0.75}]
    got = rl.answer_rates(history)
    assert got["no_answer_rates"] == [0.5, 0.25]
    assert (got["no_answer_rate_first"], got["no_answer_rate_last"]) == (0.5, 0.25)
    assert got["answer_formats"]["boxed"] == {"first": 0.5, "last": 0.75, "mean": 0.625}
    assert rl.answer_rates([{"loss": 1.0}]) == {}


def test_grpo_step_diagnostics_reach_progress_and_prometheus() -> None:
    """The figures trl 1.16's GRPOTrainer logs each step (names from its _metrics) and our
    reward's answers/none become the stage's progress metrics and polyarun_rl_* gauges."""
    from types import SimpleNamespace

    from polya_trainer.runtime.progress import REGISTRY
    from polya_trainer.stages import training as T

    reporter = Reporter("rl", "diag")
    logs = {"reward": 0.5, "reward_std": 0.25, "frac_reward_zero_std": 0.375,
            "completions/clipped_ratio": 0.0625, "completions/mean_length": 212.0,
            "entropy": 0.8, "kl": 0.01, "sampling/importance_sampling_ratio/mean": 1.01,
            "sampling/importance_sampling_ratio/min": 0.4,
            "sampling/importance_sampling_ratio/max": 2.9, "answers/none": 0.125,
            "completions/truncated_zeroed": 0.0625}
    T.make_callback(reporter).on_log(None, SimpleNamespace(is_world_process_zero=True,
                                                           global_step=3), None, logs=logs)
    got = reporter.snapshot()["metrics"]
    assert (got["no_signal_share"], got["rl_truncation_rate"], got["no_answer_rate"]) == (
        0.375, 0.0625, 0.125)
    assert (got["is_ratio_min"], got["is_ratio_max"], got["kl"]) == (0.4, 2.9, 0.01)
    assert REGISTRY.get_sample_value("polyarun_rl_no_signal_ratio",
                                     {"arm": "diag", "stage": "rl"}) == 0.375
    assert REGISTRY.get_sample_value("polyarun_rl_importance_ratio_max",
                                     {"arm": "diag", "stage": "rl"}) == 2.9


def test_a_truncated_completion_gets_reward_0_and_is_counted() -> None:
    """whole_only: a completion whose last token is neither EOS nor pad (TRL's test of
    truncation) scores 0 even with a right answer; the share is logged."""
    logged: dict[str, float] = {}
    reward = rl.whole_only(rl.correctness_reward, {0, 2})
    ids = [[5, 6, 2], [5, 6, 7], [5, 0]]  # EOS 2, cut off, pad 0
    got = reward(["\\boxed{7}"] * 3, completion_ids=ids, answer=["7"] * 3,
                 log_metric=logged.__setitem__)
    assert got == [1.0, 0.0, 1.0] and logged[rl.TRUNCATED] == pytest.approx(1 / 3)
    assert reward.__name__ == "correctness_reward"  # TRL names the reward's metrics by it


def test_importance_sampling_settings_are_spec_fields(tiny_model_dir: Path,
                                                      problems_file: Path,
                                                      tmp_path: Path) -> None:
    spec = make_spec(tiny_model_dir, problems_file)
    cfg = rl.grpo_config(spec, tmp_path)
    assert (cfg.vllm_importance_sampling_correction, cfg.vllm_importance_sampling_mode,
            cfg.vllm_importance_sampling_clip_max) == (True, "token_truncate", 2.0)
    masked = make_spec(tiny_model_dir, problems_file,
                       importanceSampling={"mode": "sequence_mask", "cap": 3.0})
    cfg = rl.grpo_config(masked, tmp_path)
    assert (cfg.vllm_importance_sampling_mode, cfg.vllm_importance_sampling_clip_max) == (
        "sequence_mask", 3.0)
    with pytest.raises(SpecError, match=re.escape("importanceSampling.mode")):
        rl.grpo_config(make_spec(tiny_model_dir, problems_file, trainerArgs={
            "vllm_importance_sampling_mode": "token_mask"}), tmp_path)


# Row 0 of DAPO-Math-17k (ground truth "34"), in the dataset's two documented shapes: the
# release (BytedTsinghua-SIA/DAPO-Math-17k: "prompt" is one user message whose text wraps the
# problem in the answer-format instructions, "reward_model" is {"ground_truth", "style"}) and
# open-r1/DAPO-Math-17k-Processed (its create_dataset.py: "prompt" is that message's text,
# "solution" the ground truth; the paper sample reads these two columns).
DAPO_PROBLEM = ("In triangle $ABC$, $\\sin \\angle A = \\frac{4}{5}$ and $\\angle A < 90^\\circ$. "
                "Let $D$ be a point outside triangle $ABC$ such that $\\angle BAD = \\angle DAC$ "
                "and $\\angle BDC = 90^\\circ$. Suppose that $AD = 1$ and that "
                "$\\frac{BD}{CD} = \\frac{3}{2}$. If $AB + AC$ can be expressed in the form "
                "$\\frac{a\\sqrt{b}}{c}$ where $a, b, c$ are pairwise relatively prime "
                "integers, find $a + b + c$.")


def test_dapo_rows_ask_for_one_format_and_the_reward_credits_it(tmp_path: Path) -> None:
    """The RL prompt asks for \\boxed{} only (DAPO's "Answer:" wrapper is removed), and the
    reward credits that format, and DAPO's own "Answer:" line, against the row's gold."""
    from polya_trainer.data.heuristics import ANSWER_REQUEST
    from polya_trainer.data.loading import DAPO_HEAD, DAPO_TAIL

    wrapped = f"{DAPO_HEAD}\n\n{DAPO_PROBLEM}\n\n{DAPO_TAIL}"
    truth = {"ground_truth": "34", "style": "rule-lighteval/MATH_v2"}
    release = {"data_source": "math_dapo", "prompt": [{"content": wrapped, "role": "user"}],
               "ability": "MATH", "reward_model": truth, "extra_info": {"index": "0"}}
    processed = {"prompt": wrapped, "solution": "34", "data_source": "math_dapo",
                 "source_prompt": release["prompt"], "ability": "MATH", "reward_model": truth,
                 "extra_info": {"index": "0"}}
    done = ["So $a + b + c = 34$, and the answer is $\\boxed{34}$.",  # as the prompt asks
            "So $a + b + c = 34$.\n\nAnswer: 34",  # as DAPO's wrapper asked
            "Answer: 43", "So $a + b + c = 9 + 5 + 20 = 34"]  # wrong; cut off
    for row, answer in ((processed, "solution"), (release, "reward_model")):
        data = tmp_path / f"{answer}.jsonl"
        data.write_text(json.dumps(row) + "\n")
        spec = make_spec(tmp_path, data, dataset={"question": "prompt", "answer": answer})
        [item] = rl.load_prompts(spec)
        assert item["prompt"] == [{"role": "user",
                                   "content": f"{DAPO_PROBLEM}\n\n{ANSWER_REQUEST}"}]
        assert item["answer"] == "34"
        assert rl.correctness_reward(done, answer=[item["answer"]] * 4) == [1.0, 1.0, 0.0, 0.0]


def test_grpo_config_from_the_spec(tiny_model_dir: Path, problems_file: Path,
                                   tmp_path: Path) -> None:
    spec = make_spec(tiny_model_dir, problems_file, formatReward=0.5,
                     trainerArgs={"top_p": 0.9})
    cfg = rl.grpo_config(spec, tmp_path)
    assert (cfg.num_generations, cfg.beta, cfg.loss_type, cfg.scale_rewards) == (
        4, 0.0, "dapo", "group")
    assert cfg.reward_weights == [1.0, 0.5] and cfg.top_p == 0.9
    assert cfg.use_cpu and not cfg.bf16 and not cfg.gradient_checkpointing
    assert cfg.use_vllm is False and cfg.seed == 5
    funcs, weights = rl.reward_setup(spec)
    assert funcs == [rl.correctness_reward, rl.format_reward] and weights == [1.0, 0.5]
    assert rl.reward_setup(make_spec(tiny_model_dir, problems_file))[0] == [
        rl.correctness_reward]
    opted = spec.model_copy(update={"answers": AnswersSpec(last_number_fallback=True)})
    assert rl.reward_setup(opted)[0] == [rl.fallback_correctness_reward, rl.format_reward]
    # Paper defaults.
    paper = PolyaRunSpec(model={"name": "m"}).stages.rl
    assert (paper.num_generations, paper.beta) == (16, 0.0)


def test_generation_batch_must_hold_whole_groups(tiny_model_dir: Path, problems_file: Path,
                                                 tmp_path: Path) -> None:
    spec = make_spec(tiny_model_dir, problems_file, perDeviceBatchSize=6)
    with pytest.raises(SpecError) as err:
        rl.grpo_config(spec, tmp_path)
    msg = str(err.value)
    assert "spec.stages.rl.perDeviceBatchSize" in msg and "spec.stages.rl.numGenerations" in msg
    with pytest.raises(SpecError, match=re.escape("trainerArgs.num_generations: may not be set")):
        rl.grpo_config(make_spec(tiny_model_dir, problems_file,
                                 trainerArgs={"num_generations": 2}), tmp_path)
    with pytest.raises(SpecError,
                       match=re.escape("not a field of trl.GRPOConfig; did you mean beta")):
        rl.grpo_config(make_spec(tiny_model_dir, problems_file, trainerArgs={"betta": 1}),
                       tmp_path)
    # Gradient accumulation multiplies the generation batch: 6 x 2 = 12 holds groups of 4.
    ok = make_spec(tiny_model_dir, problems_file, perDeviceBatchSize=6,
                   gradientAccumulationSteps=2)
    assert rl.grpo_config(ok, tmp_path).generation_batch_size == 12


def test_polya_arm_needs_its_midtrained_model(tiny_model_dir: Path, problems_file: Path,
                                              tmp_path: Path) -> None:
    spec = make_spec(tiny_model_dir, problems_file, arms=["polya"])
    with pytest.raises(FileNotFoundError, match="run the midtrain stage first"):
        rl.run(spec, "polya", tmp_path, Reporter("rl", "polya"))


def _weights(model_dir: Path) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM

    return {k: v.clone() for k, v in
            AutoModelForCausalLM.from_pretrained(model_dir).state_dict().items()}


def _accuracy(model_dir: Path, problems: list[dict[str, str]], samples: int = 8) -> float:
    """Sampled accuracy on fixed questions with a fixed seed (the RL reward, measured apart)."""
    import torch
    from polya_trainer.data.heuristics import plain_messages
    from polya_trainer.verify.answers import is_correct
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    torch.manual_seed(0)
    texts = [tok.apply_chat_template(plain_messages(p["question"]), add_generation_prompt=True,
                                     tokenize=False) for p in problems]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**enc, do_sample=True, temperature=0.7, max_new_tokens=40,
                             num_return_sequences=samples, pad_token_id=tok.pad_token_id)
    gen = tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    golds = [p["answer"] for p in problems for _ in range(samples)]
    return sum(is_correct(g, a) for g, a in zip(gen, golds, strict=True)) / len(gen)


@pytest.mark.slow
def test_grpo_on_the_toy_model_raises_the_reward(toy_model_dir: Path, problems_file: Path,
                                                 tmp_path: Path) -> None:
    """From the mid-trained (here: toy) model, GRPO gets non-zero reward, the reward rises and
    the weights change; the stage writes a complete model and metrics."""
    # The toy model stands in for the polya arm's mid-trained model.
    start = Workspace(tmp_path).model("polya", "midtrain")
    shutil.copytree(toy_model_dir, start)
    write_manifest(start, kind="model")
    # Eight fixed prompts seen many times: the policy sharpens on them, so the reward rises
    # even though the toy model already solves most of them.
    spec = make_spec(toy_model_dir, problems_file, arms=["polya"], maxSteps=40,
                     dataset={"limit": 8}, perDeviceBatchSize=32, numGenerations=8,
                     learningRate=1e-4, temperature=1.0)
    problems = [json.loads(line) for line in problems_file.read_text().splitlines()][:8]
    before = _accuracy(start, problems)
    # A failure, never a skip: a broken toy model or answer checker must not pass unseen.
    assert before >= 0.05, (f"the toy model solves only {before:.1%} of the fixed problems: "
                            "too little reward signal for a short GRPO run")

    reporter = Reporter("rl", "polya")
    outputs = rl.run(spec, "polya", tmp_path, reporter)

    assert outputs["model"] == "polya/rl/model"
    final = Workspace(tmp_path).model("polya", "rl")
    assert is_complete(final, verify=True)
    assert read_manifest(Workspace(tmp_path).stage("polya", "rl"))["outputs"] == outputs
    metrics = json.loads((Workspace(tmp_path).stage("polya", "rl") / "metrics.json").read_text())
    assert metrics["global_step"] == 40 and metrics["use_vllm"] is False
    assert metrics["reward_mean"] > 0  # non-zero reward
    # Rising: the mean reward of the last 8 steps beats the first 8 (from trainer_state).
    rewards = metrics["rewards"]  # one mean reward per step
    first, last = sum(rewards[:8]) / 8, sum(rewards[-8:]) / 8
    assert len(rewards) == 40 and last > first + 0.05, (first, last, rewards)
    after = _accuracy(final, problems)
    assert after >= before - 0.05, (before, after)  # and the RL'd model is no worse
    start_w, final_w = _weights(start), _weights(final)
    assert any(not (start_w[k] == final_w[k]).all() for k in start_w)
    snap = reporter.snapshot()
    assert snap["done"] == 40 and {"reward_mean", "reward_std", "loss"} <= set(snap["metrics"])


def test_vanilla_arm_starts_from_the_base_model(tiny_model_dir: Path, problems_file: Path,
                                                tmp_path: Path) -> None:
    """Two GRPO steps on the untrained model: the stage wiring, checkpoints and outputs."""
    spec = make_spec(tiny_model_dir, problems_file, maxSteps=2, saveSteps=1,
                     maxCompletionLength=16)
    rl.run(spec, "vanilla", tmp_path, Reporter("rl", "vanilla"))
    assert is_complete(Workspace(tmp_path).model("vanilla", "rl"))
    metrics = json.loads((Workspace(tmp_path).stage("vanilla", "rl") / "metrics.json").read_text())
    assert metrics["global_step"] == 2 and metrics["resumed_from_step"] is None
    # The share of completions with no extractable answer, step by step (TRL's log_metric).
    assert len(metrics["no_answer_rates"]) == 2
    assert 0.0 <= metrics["no_answer_rate_mean"] <= 1.0 and "none" in metrics["answer_formats"]
    from polya_trainer.stages.training import newest_checkpoint

    newest = newest_checkpoint(Workspace(tmp_path).checkpoints("vanilla", "rl"))
    assert newest.name == "checkpoint-2"


# --------------------------------------------------------------------------- no silent fallback


def _no_vllm() -> None:
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is importable in this venv; the missing-engine case needs a venv "
                    "without it (the project's .venv)")


def test_vllm_asked_for_but_missing_is_invalid_config(tiny_model_dir: Path, problems_file: Path,
                                                       tmp_path: Path) -> None:
    """generate.backend vllm without vllm: rl refuses to fall back to HF generate, and every
    stage that asks for vLLM names the field; trainerArgs.use_vllm=false opts out."""
    from polya_trainer.backends.models import require_engine

    _no_vllm()
    spec = make_spec(tiny_model_dir, problems_file, generate={"backend": "vllm"})
    with pytest.raises(SpecError) as err:
        rl.grpo_config(spec, tmp_path)
    assert err.value.errors[0][0] == "spec.stages.generate.backend"
    assert "vllm cannot be imported" in err.value.errors[0][1]
    for stage in ("generate", "rl"):
        with pytest.raises(SpecError):
            require_engine(spec, stage)
    require_engine(spec, "midtrain")
    hf = make_spec(tiny_model_dir, problems_file, trainerArgs={"use_vllm": False},
                   generate={"backend": "vllm"})
    assert rl.grpo_config(hf, tmp_path).use_vllm is False
    forced = make_spec(tiny_model_dir, problems_file, trainerArgs={"use_vllm": True})
    with pytest.raises(SpecError, match=r"trainerArgs\.use_vllm"):
        rl.grpo_config(forced, tmp_path)


def test_missing_vllm_exits_2_which_the_job_fails_without_retry(
        tiny_model_dir: Path, problems_file: Path, tmp_path: Path) -> None:
    """The pod entrypoint exits 2, the code the Job's podFailurePolicy turns into FailJob
    (reported as InvalidConfig, not retried)."""
    import os
    import subprocess
    import sys

    import yaml
    from polya_operator import resources as R

    _no_vllm()
    spec = make_spec(tiny_model_dir, problems_file, generate={"backend": "vllm"})
    meta = {"name": "nv", "namespace": "t", "uid": "u"}
    (tmp_path / "run.yaml").write_text(R.configmap(meta, spec)["data"]["run.yaml"])
    proc = subprocess.run([sys.executable, "-m", "polya_trainer", "rl", "--spec",
                           str(tmp_path / "run.yaml"), "--workdir", str(tmp_path / "w"),
                           "--arm", "vanilla"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "POLYA_PROGRESS_FILE": str(tmp_path / "p.json")})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "spec.stages.generate.backend: asks for vLLM" in proc.stderr
    rules = R.job(meta, spec, "vanilla", "rl", 0, image="i")["spec"]["podFailurePolicy"]["rules"]
    assert {"action": "FailJob", "onExitCodes": {"containerName": "trainer", "operator": "In",
                                                 "values": [2]}} in rules
    assert not (tmp_path / "w" / "vanilla" / "rl" / "checkpoints").exists()
    assert yaml.safe_load((tmp_path / "run.yaml").read_text())["kind"] == "PolyaRun"


# --------------------------------------------------------------------------- batch mapping


def test_paper_sample_maps_verls_batches_onto_trl() -> None:
    """manifests/samples/paper-llama3b.yaml on its 4 GPUs: 128 prompts per rollout, 4 updates
    of 32 prompts; and TRL's own GRPOConfig derives the same steps_per_generation."""
    from polya_trainer.spec import load_runs
    from trl import GRPOConfig

    root = Path(__file__).resolve().parents[2]
    spec = load_runs(root / "manifests" / "samples" / "paper-llama3b.yaml")[0].spec
    cfg = spec.stages.rl
    processes = cfg.resources.processes_per_node or cfg.resources.gpus
    plan = rl.rollout_plan(spec, cfg.trainer_args, processes)
    assert plan == {"generation_batch_size": 2048, "steps_per_generation": 128,
                    "completions_per_update": 512, "updates_per_rollout": 4,
                    "prompts_per_rollout": 128, "gradient_accumulation_steps": 32}
    assert plan["completions_per_update"] // cfg.num_generations == 32
    from polya_trainer.stages import training as T

    assert T.validate_trainer_args("rl", cfg.trainer_args, GRPOConfig, T.GRPO_PROTECTED) == {
        "vllm_gpu_memory_utilization": 0.35, "vllm_max_model_length": 4096}
    # One CPU process standing in for 4 GPUs: the same micro-batch (4 x 4 = 16 completions).
    trl_cfg = GRPOConfig(output_dir="/tmp/unused", use_cpu=True, bf16=False, report_to="none",
                         per_device_train_batch_size=cfg.per_device_batch_size * processes,
                         gradient_accumulation_steps=plan["gradient_accumulation_steps"],
                         num_generations=cfg.num_generations,
                         generation_batch_size=plan["generation_batch_size"])
    assert trl_cfg.steps_per_generation == plan["steps_per_generation"]


def test_prompts_per_rollout_must_split_into_whole_updates(
        tiny_model_dir: Path, problems_file: Path, tmp_path: Path) -> None:
    spec = make_spec(tiny_model_dir, problems_file, promptsPerRollout=4, perDeviceBatchSize=4,
                     gradientAccumulationSteps=2)  # 16 completions = 2 updates of 8
    cfg = rl.grpo_config(spec, tmp_path)
    assert (cfg.generation_batch_size, cfg.steps_per_generation) == (16, 4)
    bad = make_spec(tiny_model_dir, problems_file, promptsPerRollout=3, perDeviceBatchSize=8)
    with pytest.raises(SpecError, match=re.escape("spec.stages.rl.promptsPerRollout")):
        rl.grpo_config(bad, tmp_path)
    clash = make_spec(tiny_model_dir, problems_file, promptsPerRollout=4,
                      trainerArgs={"steps_per_generation": 2})
    with pytest.raises(SpecError, match=re.escape("trainerArgs.steps_per_generation")):
        rl.grpo_config(clash, tmp_path)
