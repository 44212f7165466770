"""Mid-training (stage 2): real TRL SFTTrainer steps on the tiny model, on CPU.

The generate stage's output is written here by the tests themselves (parquet shards plus a
manifest, the layout generate.py writes), so these tests do not depend on stage 1.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from polya_trainer.runtime.artifacts import is_complete, read_manifest, write_manifest
from polya_trainer.runtime.hold import HOLD_ENV
from polya_trainer.runtime.progress import Reporter
from polya_trainer.runtime.workspace import Workspace
from polya_trainer.spec import PolyaRunSpec, SpecError
from polya_trainer.stages import training as T
from polya_trainer.toy import CHAT_TEMPLATE, word_problems

ROOT = Path(__file__).resolve().parents[2]


def write_generated(workdir: Path, arm: str, n: int = 16, seed: int = 3) -> Path:
    """Parquet shards like the generate stage's, with its manifest."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    gen = Workspace(workdir).stage(arm, "generate")
    (gen / "data").mkdir(parents=True, exist_ok=True)
    rows = []
    for p in word_problems(n, seed):
        msgs = [{"role": "system", "content": "Work backwards."},
                {"role": "user", "content": p["question"]}]
        rows.append({"question": p["question"], "completion": p["solution"],
                     "heuristic": "work_backwards", "prompt_messages": json.dumps(msgs),
                     "answer": p["answer"]})
    half = n // 2
    for i, chunk in enumerate((rows[:half], rows[half:])):
        pq.write_table(pa.Table.from_pylist(chunk), gen / "data" / f"shard-{i:05d}.parquet")
    write_manifest(gen, outputs={"data": f"{arm}/generate/data"})
    return gen


def make_spec(model_dir: Path, **midtrain: Any) -> PolyaRunSpec:
    stage = {"epochs": 1, "learningRate": 3e-3, "perDeviceBatchSize": 4,
             "gradientAccumulationSteps": 1, "maxLength": 256, "saveSteps": 1000, **midtrain}
    return PolyaRunSpec.model_validate({
        "model": {"name": str(model_dir), "dtype": "float32"},
        "arms": ["polya"], "seed": 1, "stages": {"midtrain": stage}})


def run_midtrain(spec: PolyaRunSpec, workdir: Path, arm: str = "polya") -> tuple[dict, Reporter]:
    from polya_trainer.stages import midtrain

    reporter = Reporter("midtrain", arm)
    return midtrain.run(spec, arm, workdir, reporter), reporter


def completion_loss(model_dir: Path, examples: Any) -> float:
    """Mean NLL of the completion tokens of a fixed set of examples, prompt masked out."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    total, count = 0.0, 0
    for ex in examples:
        prompt = tok.apply_chat_template(ex["prompt"], add_generation_prompt=True,
                                         tokenize=False)
        full = tok.apply_chat_template(ex["prompt"] + ex["completion"], tokenize=False)
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([tok(full, add_special_tokens=False)["input_ids"]])
        labels = ids.clone()
        labels[0, :len(p_ids)] = -100
        with torch.no_grad():
            out = model(input_ids=ids, labels=labels)
        n = int((labels[0, 1:] != -100).sum())
        total, count = total + out.loss.item() * n, count + n
    return total / count


def test_sft_loss_falls_and_writes_a_complete_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    import torch
    from polya_trainer.stages import midtrain
    from transformers import AutoModelForCausalLM

    write_generated(tmp_path, "polya")
    spec = make_spec(tiny_model_dir, maxSteps=12)
    outputs, reporter = run_midtrain(spec, tmp_path)

    assert outputs["model"] == "polya/midtrain/model"
    manifest = read_manifest(Workspace(tmp_path).stage("polya", "midtrain"))
    assert manifest is not None and manifest["outputs"]["model"] == "polya/midtrain/model"
    assert "metrics.json" in manifest["files"]
    model_dir = Workspace(tmp_path).model("polya", "midtrain")
    assert is_complete(model_dir, verify=True)
    # Loss on the (fixed) training set, before vs after.
    examples = midtrain.load_examples(tmp_path, "polya", spec.stages.midtrain)
    before = completion_loss(tiny_model_dir, examples)
    after = completion_loss(model_dir, examples)
    assert after < before * 0.8, (before, after)
    # The reporter saw the steps and the figures.
    snap = reporter.snapshot()
    assert snap["done"] == 12 and snap["total"] == 12 and snap["unit"] == "steps"
    assert {"loss", "learning_rate", "epoch", "step"} <= set(snap["metrics"])
    assert snap["metrics"]["tokens_per_second"] > 0
    # The saved model loads and differs from the start.
    trained = AutoModelForCausalLM.from_pretrained(model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    diff = sum((a - b).abs().sum().item() for a, b in
               zip(trained.state_dict().values(), base.state_dict().values(), strict=True))
    assert diff > 0
    assert torch.isfinite(next(trained.parameters())).all()
    assert not (model_dir / "training_args.bin").exists()


def test_completion_only_loss_and_prompts(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Plain-question prompts by default, heuristic messages with keepHeuristicPrompt, and
    TRL masks the prompt out of the loss."""
    from polya_trainer.stages import midtrain

    write_generated(tmp_path, "polya", n=4)
    spec = make_spec(tiny_model_dir)
    plain = midtrain.load_examples(tmp_path, "polya", spec.stages.midtrain)
    assert plain[0]["prompt"][-1]["role"] == "user"
    assert all(m["role"] != "system" for m in plain[0]["prompt"])
    assert plain[0]["completion"][0]["role"] == "assistant"
    spec_h = make_spec(tiny_model_dir, keepHeuristicPrompt=True)
    kept = midtrain.load_examples(tmp_path, "polya", spec_h.stages.midtrain)
    assert kept[0]["prompt"][0] == {"role": "system", "content": "Work backwards."}

    trainer, tok, _ = midtrain.build_trainer(spec, "polya", tmp_path, Reporter("midtrain"))
    row = trainer.train_dataset[0]
    mask = [label != -100 for label in row["labels"]]
    assert 0 < sum(mask) < len(mask)  # some tokens (the prompt) are excluded
    completion_text = tok.decode([t for t, m in zip(row["input_ids"], mask, strict=True) if m])
    assert "boxed" in completion_text and "?" not in completion_text


# The date logic of Llama 3.x's chat template (tokenizer_config.json of
# meta-llama/Llama-3.2-3B-Instruct: date_string if given, else strftime_now("%d %b %Y")),
# around the toy model's ChatML.
DATED_TEMPLATE = (
    "{%- if not date_string is defined %}{%- if strftime_now is defined %}"
    "{%- set date_string = strftime_now('%d %b %Y') %}{%- else %}"
    "{%- set date_string = '26 Jul 2024' %}{%- endif %}{%- endif %}"
    "{{ '<|im_start|>system\nToday Date: ' + date_string + '<|im_end|>\n' }}"
) + CHAT_TEMPLATE


def test_sft_renders_the_pinned_template_date(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A template that stamps today's date gets the pinned one in SFT, as in the other stages."""
    from polya_trainer.data.prompts import CHAT_TEMPLATE_DATE
    from polya_trainer.stages import midtrain
    from transformers import AutoTokenizer

    dated = tmp_path / "dated-model"
    dated.mkdir()
    for f in tiny_model_dir.iterdir():
        (dated / f.name).symlink_to(f)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = DATED_TEMPLATE
    for f in ("tokenizer_config.json", "chat_template.jinja", "tokenizer.json"):
        (dated / f).unlink(missing_ok=True)
    tok.save_pretrained(dated)
    today = time.strftime("%d %b %Y")
    assert today != CHAT_TEMPLATE_DATE
    assert today in tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)

    write_generated(tmp_path, "polya", n=4)
    trainer, tok, _ = midtrain.build_trainer(make_spec(dated), "polya", tmp_path,
                                             Reporter("midtrain"))
    text = tok.decode(trainer.train_dataset[0]["input_ids"])
    assert f"Today Date: {CHAT_TEMPLATE_DATE}" in text and today not in text


def test_lora_runs_and_merges(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    write_generated(tmp_path, "star")
    spec = make_spec(tiny_model_dir, maxSteps=3, lora={"r": 4, "alpha": 8, "merge": True})
    spec = spec.model_copy(update={"arms": ["star"]})
    run_midtrain(spec, tmp_path, arm="star")
    model_dir = Workspace(tmp_path).model("star", "midtrain")
    assert is_complete(model_dir)
    assert not (model_dir / "adapter_config.json").exists()  # merged: a plain model
    merged = AutoModelForCausalLM.from_pretrained(model_dir)
    assert not any("lora" in k for k in merged.state_dict())
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    diff = sum((a - b).abs().sum().item() for a, b in
               zip(merged.state_dict().values(), base.state_dict().values(), strict=True))
    assert diff > 0


def test_lora_without_merge_keeps_an_adapter(tiny_model_dir: Path, tmp_path: Path) -> None:
    write_generated(tmp_path, "polya", n=4)
    spec = make_spec(tiny_model_dir, maxSteps=1, lora={"r": 2, "merge": False,
                                                        "targetModules": ["q_proj", "v_proj"]})
    run_midtrain(spec, tmp_path)
    model_dir = Workspace(tmp_path).model("polya", "midtrain")
    assert (model_dir / "adapter_config.json").exists()
    assert read_manifest(model_dir)["adapter"] is True


def test_trainer_args_are_validated(tiny_model_dir: Path, tmp_path: Path) -> None:
    from polya_trainer.stages import midtrain

    spec = make_spec(tiny_model_dir, trainerArgs={"lerning_rate_sched": 1, "warmup_steps": 0.1})
    with pytest.raises(SpecError) as err:
        midtrain.sft_config(spec, tmp_path)
    assert "spec.stages.midtrain.trainerArgs.lerning_rate_sched" in str(err.value)
    assert "SFTConfig" in str(err.value)

    spec = make_spec(tiny_model_dir, trainerArgs={"warmup_step": 0.1})
    with pytest.raises(SpecError, match="did you mean warmup_steps"):
        midtrain.sft_config(spec, tmp_path)

    spec = make_spec(tiny_model_dir, trainerArgs={"learning_rate": 0.1})
    with pytest.raises(SpecError, match=re.escape("spec.stages.midtrain.learningRate instead")):
        midtrain.sft_config(spec, tmp_path)

    spec = make_spec(tiny_model_dir, trainerArgs={"weight_decay": 0.1, "logging_steps": 5})
    cfg = midtrain.sft_config(spec, tmp_path)
    assert cfg.weight_decay == 0.1 and cfg.logging_steps == 5
    # CPU settings (TRL would default to bf16 and gradient checkpointing).
    assert cfg.use_cpu and not cfg.bf16 and not cfg.gradient_checkpointing
    assert cfg.lr_scheduler_type == "cosine" and cfg.warmup_steps == 0.03
    assert cfg.completion_only_loss is True and cfg.seed == 1

    spec = make_spec(tiny_model_dir, trainerArgs={"weight_decay": "heavy"})
    with pytest.raises(SpecError, match=re.escape("trainerArgs.weight_decay: expected a float")):
        midtrain.sft_config(spec, tmp_path)
    # Values the dataclass refuses are reported with the stage's path too.
    spec = make_spec(tiny_model_dir, trainerArgs={"lr_scheduler_type": "zigzag"})
    with pytest.raises(SpecError, match=re.escape("spec.stages.midtrain: trl.SFTConfig refused")):
        midtrain.sft_config(spec, tmp_path)


def test_missing_generated_data_is_a_clear_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run the generate stage first"):
        run_midtrain(make_spec(tiny_model_dir, maxSteps=1), tmp_path)


# ----------------------------------------------------------------------------- kill/resume


def _spec_file(tmp_path: Path, model_dir: Path, **midtrain: Any) -> Path:
    spec = make_spec(model_dir, **midtrain).dump()
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "polya.dev/v1alpha1", "kind": "PolyaRun",
                                    "metadata": {"name": "t"}, "spec": spec}))
    return path


def _start(spec_file: Path, workdir: Path, progress: Path,
           hold: tuple[int, Path] | None = None) -> subprocess.Popen[bytes]:
    """The stage as the pod runs it; `hold` = (k, file) holds it at the end of step k."""
    env = dict(os.environ, POLYA_PROGRESS_FILE=str(progress), OMP_NUM_THREADS="1",
               PYTHONPATH=str(ROOT / "trainer"))
    if hold:
        env[HOLD_ENV] = f"{hold[0]}:{hold[1]}"
    return subprocess.Popen(
        [sys.executable, "-m", "polya_trainer", "midtrain", "--spec", str(spec_file),
         "--workdir", str(workdir), "--arm", "polya"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_for(proc: subprocess.Popen[bytes], cond: Any, timeout: float = 240) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        if proc.poll() is not None:
            out = proc.stdout.read().decode()[-3000:] if proc.stdout else ""
            pytest.fail(f"training ended (rc {proc.returncode}) before the condition:\n{out}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("timed out waiting for the training subprocess")


def _finish(proc: subprocess.Popen[bytes], timeout: float = 240) -> str:
    out, _ = proc.communicate(timeout=timeout)
    return out.decode()


def test_sigkill_then_rerun_resumes_from_the_checkpoint(tiny_model_dir: Path,
                                                        tmp_path: Path) -> None:
    write_generated(tmp_path, "polya", n=32)
    spec_file = _spec_file(tmp_path, tiny_model_dir, maxSteps=40, saveSteps=2,
                           perDeviceBatchSize=2)
    ckpts = Workspace(tmp_path).checkpoints("polya", "midtrain")
    held = tmp_path / "held"  # held at the end of step 5: checkpoint-4 is the newest
    proc = _start(spec_file, tmp_path, tmp_path / "p1.json", hold=(5, held))
    _wait_for(proc, held.exists)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    newest = T.newest_checkpoint(ckpts)
    assert newest is not None
    step = T.checkpoint_step(newest)
    assert step == 4
    assert not is_complete(Workspace(tmp_path).model("polya", "midtrain"))

    out = _finish(_start(spec_file, tmp_path, tmp_path / "p2.json"))
    metrics = json.loads(
        (Workspace(tmp_path).stage("polya", "midtrain") / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == step, out[-2000:]
    assert metrics["global_step"] == 40
    assert metrics["steps_this_run"] == 40 - step
    assert is_complete(Workspace(tmp_path).model("polya", "midtrain"))
    final_state = json.loads((T.newest_checkpoint(ckpts) / "trainer_state.json").read_text())
    assert final_state["global_step"] == 40
    # The log history carries on from the first run's steps.
    assert [h["step"] for h in final_state["log_history"] if "loss" in h][:2] == [1, 2]


def test_sigterm_saves_a_checkpoint_and_exits_143(tiny_model_dir: Path, tmp_path: Path) -> None:
    write_generated(tmp_path, "polya", n=32)
    # No periodic checkpoint before step 1000: any checkpoint comes from SIGTERM.
    spec_file = _spec_file(tmp_path, tiny_model_dir, maxSteps=60, saveSteps=1000,
                           perDeviceBatchSize=2)
    ckpts = Workspace(tmp_path).checkpoints("polya", "midtrain")
    progress, held = tmp_path / "p1.json", tmp_path / "held"
    proc = _start(spec_file, tmp_path, progress, hold=(3, held))
    _wait_for(proc, held.exists)  # the end of step 3, whatever the machine's speed
    proc.send_signal(signal.SIGTERM)
    out = _finish(proc)
    assert proc.returncode == T.PREEMPTED_EXIT_CODE, out[-3000:]
    newest = T.newest_checkpoint(ckpts)
    assert newest is not None, out[-3000:]
    assert T.checkpoint_step(newest) == 3
    state = json.loads(progress.read_text())
    assert state["state"] == "Suspended" and "checkpoint-3" in state["message"]
    assert not is_complete(Workspace(tmp_path).stage("polya", "midtrain"))

    out = _finish(_start(spec_file, tmp_path, tmp_path / "p2.json"))
    metrics = json.loads(
        (Workspace(tmp_path).stage("polya", "midtrain") / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == 3, out[-2000:]
    assert metrics["steps_this_run"] == 60 - 3


def test_sigterm_during_the_last_step_finishes_the_stage(tiny_model_dir: Path,
                                                          tmp_path: Path) -> None:
    """The chosen rule (stages/training.py): SIGTERM at the last step saves the final model
    and exits 0, since a checkpoint would cost as much and its rerun would train nothing."""
    write_generated(tmp_path, "polya", n=16)
    spec_file = _spec_file(tmp_path, tiny_model_dir, maxSteps=4, saveSteps=1000,
                           perDeviceBatchSize=2)
    progress, held = tmp_path / "p.json", tmp_path / "held"
    proc = _start(spec_file, tmp_path, progress, hold=(4, held))
    _wait_for(proc, held.exists)
    proc.send_signal(signal.SIGTERM)
    out = _finish(proc)
    assert proc.returncode == 0, out[-3000:]
    assert "SIGTERM during the last step" in out
    assert is_complete(Workspace(tmp_path).stage("polya", "midtrain"))
    metrics = json.loads(
        (Workspace(tmp_path).stage("polya", "midtrain") / "metrics.json").read_text())
    assert metrics["global_step"] == 4 and metrics["steps_this_run"] == 4
    assert json.loads(progress.read_text())["state"] == "Succeeded"


def test_a_held_stage_goes_on_when_released(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The hold hook itself: removing its file lets the stage finish untouched."""
    write_generated(tmp_path, "polya", n=16)
    spec_file = _spec_file(tmp_path, tiny_model_dir, maxSteps=3, saveSteps=1000,
                           perDeviceBatchSize=2)
    held = tmp_path / "held"
    proc = _start(spec_file, tmp_path, tmp_path / "p.json", hold=(2, held))
    _wait_for(proc, held.exists)
    assert json.loads(held.read_text())["step"] == 2 and proc.poll() is None
    held.unlink()
    out = _finish(proc)
    assert proc.returncode == 0, out[-3000:]
    assert is_complete(Workspace(tmp_path).stage("polya", "midtrain"))


def test_incomplete_checkpoints_are_ignored_and_pruned(tmp_path: Path) -> None:
    """Pure checkpoint bookkeeping: marker + parseable state whose step matches the name."""
    def ckpt(step: int, marker: bool = True, state_step: int | None = None,
             state_text: str | None = None) -> Path:
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        (d / "trainer_state.json").write_text(
            state_text if state_text is not None
            else json.dumps({"global_step": step if state_step is None else state_step}))
        if marker:
            (d / T.MARKER).write_text(json.dumps({"step": step}))
        return d

    ckpt(2)
    good = ckpt(4)
    ckpt(6, marker=False)                  # killed before the marker
    ckpt(8, state_text='{"global_st')      # truncated state
    ckpt(10, state_step=9)                 # state from elsewhere
    (tmp_path / "checkpoint-x").mkdir()
    assert T.newest_checkpoint(tmp_path) == good
    removed = {p.name for p in T.prune_incomplete(tmp_path)}
    assert removed == {"checkpoint-6", "checkpoint-8", "checkpoint-10"}
    assert T.newest_checkpoint(tmp_path) == good
    assert T.newest_checkpoint(tmp_path / "absent") is None


# --------------------------------------------------------------------------- precision


@pytest.mark.parametrize(("dtype", "lora", "cuda", "bf16", "want"), [
    # A full fine-tune on a GPU: float32 master weights, half-precision autocast.
    ("auto", False, True, True, ("float32", True, False)),
    ("bfloat16", False, True, True, ("float32", True, False)),
    ("auto", False, True, False, ("float32", False, True)),  # e.g. V100/T4: fp16 autocast
    ("float16", False, True, True, ("float32", False, True)),
    ("float32", False, True, True, ("float32", False, False)),
    # LoRA: frozen base weights may stay half precision; adapters are float32 (peft).
    ("auto", True, True, True, ("bfloat16", True, False)),
    ("auto", True, True, False, ("float16", False, True)),
    # CPU: float32, no autocast.
    ("auto", False, False, False, ("float32", False, False)),
    ("bfloat16", False, False, False, ("float32", False, False)),
])
def test_precision_plan(dtype: str, lora: bool, cuda: bool, bf16: bool,
                        want: tuple[str, bool, bool]) -> None:
    plan = T.precision_plan(dtype, lora=lora, cuda=cuda, bf16_supported=bf16)
    assert (plan.load_dtype, plan.bf16, plan.fp16) == want


def test_gpu_decision_loads_float32_and_shards_with_fsdp(tiny_model_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          ) -> None:
    """What a bf16 GPU would get, with the hardware probe answered as on an A100/H100."""
    monkeypatch.setattr(T, "cuda_bf16", lambda: (True, True))
    spec = make_spec(tiny_model_dir).model.model_copy(update={"dtype": "auto"})
    assert T.training_model_spec(spec).dtype == "float32"
    assert T.training_model_spec(spec, lora=True).dtype == "bfloat16"
    monkeypatch.setenv("WORLD_SIZE", "4")
    args = T.device_args(spec)
    assert (args["bf16"], args["fp16"], args["fsdp"]) == (True, False, True)
    assert args["fsdp_config"]["version"] == 2 and not args["gradient_checkpointing"]
    assert "fsdp" not in T.device_args(spec, lora=True)  # LoRA stays DDP
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert "fsdp" not in T.device_args(spec)


def _one_step(spec: PolyaRunSpec, workdir: Path) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(trainer, weights before, weights after) of one real SFTTrainer step."""
    from polya_trainer.stages import midtrain

    trainer, _, _ = midtrain.build_trainer(spec, "polya", workdir, Reporter("midtrain"))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    after = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    return trainer, before, after


def _changed(before: dict[str, Any], after: dict[str, Any]) -> float:
    moved = sum(int((after[n] != before[n]).sum()) for n in before)
    return moved / sum(t.numel() for t in before.values())


def test_master_weights_and_optimizer_state_are_float32_under_bf16_autocast(
        tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real SFTTrainer step with bf16 autocast (on CPU) at the paper's RL learning rate,
    1e-6: the weights and AdamW's exp_avg/exp_avg_sq are float32 and nearly every weight moves.
    Loaded in bf16 (the old behaviour), the same step rounds almost every update away."""
    import torch

    write_generated(tmp_path / "a", "polya", n=8)
    spec = make_spec(tiny_model_dir, learningRate=1e-6, maxSteps=1, perDeviceBatchSize=4,
                     trainerArgs={"bf16": True, "warmup_steps": 0})
    spec.model.dtype = "bfloat16"  # the compute dtype asked for; the plan keeps fp32 masters
    trainer, before, after = _one_step(spec, tmp_path / "a")
    assert trainer.args.bf16
    assert {p.dtype for p in trainer.model.parameters()} == {torch.float32}
    state = [s for s in trainer.optimizer.state.values() if s]
    assert state and {s[k].dtype for s in state for k in ("exp_avg", "exp_avg_sq")} == {
        torch.float32}
    assert _changed(before, after) > 0.9

    write_generated(tmp_path / "b", "polya", n=8)
    monkeypatch.setattr(T, "training_model_spec", lambda model, lora=False: model)
    trainer, before, after = _one_step(spec, tmp_path / "b")
    assert {p.dtype for p in trainer.model.parameters()} == {torch.bfloat16}
    assert _changed(before, after) < 0.1
