"""Step time of our training stages vs bare TRL, same model, data and config, same run.

For each stage (midtrain = SFTTrainer, rl = GRPOTrainer) and each repetition, we train
``--steps`` optimizer steps twice, alternating the order:

* **ours**: the stage's own code path (``midtrain.build_trainer``/``rl.build_trainer``: spec ->
  config validation, device arguments, the progress/metrics/SIGTERM callback, checkpoint
  bookkeeping, ``training.train``);
* **bare**: ``SFTTrainer``/``GRPOTrainer`` built directly with the same values written out by
  hand, the same model directory and the same rows.

Step time = the interval between consecutive ``on_step_end`` calls, recorded by a timing
callback appended last in both cases (so it covers everything one step costs, including our
callback); the first ``--warmup`` steps are dropped. We report the median per run, then the
median and spread (min/max) over repetitions, and ratio = median(ours) / median(bare); the
goal is <= 1.03.

Run: ``.venv/bin/python bench/training.py [--model DIR] [--reps 3] [--steps 30]``
(without --model it builds the tiny model in a temporary directory). Writes
``bench/results/training.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "trainer"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def timing_callback() -> Any:
    from transformers import TrainerCallback

    class Timing(TrainerCallback):
        def __init__(self) -> None:
            self.stamps: list[float] = []

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.stamps.append(time.perf_counter())

        def step_times(self, warmup: int) -> list[float]:
            d = [b - a for a, b in zip(self.stamps, self.stamps[1:], strict=False)]
            return d[warmup:]

    return Timing()


def make_spec(model: Path, problems: Path, steps: int) -> Any:
    from polya_trainer.spec import PolyaRunSpec

    return PolyaRunSpec.model_validate({
        "model": {"name": str(model), "dtype": "float32"}, "arms": ["polya", "vanilla"],
        "seed": 3,
        "stages": {
            "generate": {"backend": "hf"},
            "midtrain": {"epochs": 1, "maxSteps": steps, "learningRate": 1e-4,
                         "perDeviceBatchSize": 8, "gradientAccumulationSteps": 1,
                         "maxLength": 256, "saveSteps": 10_000},
            "rl": {"dataset": {"source": str(problems)}, "maxSteps": steps,
                   "numGenerations": 4, "perDeviceBatchSize": 8, "maxCompletionLength": 32,
                   "learningRate": 1e-5, "saveSteps": 10_000},
        }})


def write_generated(workdir: Path, n: int) -> None:
    """Generated data in the generate stage's layout (question/completion/prompt_messages)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from polya_trainer.data.heuristics import plain_messages
    from polya_trainer.runtime.artifacts import write_manifest
    from polya_trainer.runtime.workspace import Workspace
    from polya_trainer.toy import word_problems

    gen = Workspace(workdir).stage("polya", "generate")
    (gen / "data").mkdir(parents=True, exist_ok=True)
    rows = [{"question": p["question"], "completion": p["solution"], "heuristic": "none",
             "prompt_messages": json.dumps(plain_messages(p["question"])), "answer": p["answer"]}
            for p in word_problems(n, 11)]
    pq.write_table(pa.Table.from_pylist(rows), gen / "data" / "shard-00000.parquet")
    write_manifest(gen, outputs={"data": "polya/generate/data"})


def run_ours(stage: str, spec: Any, workdir: Path, warmup: int) -> list[float]:
    from polya_trainer.runtime.progress import Reporter
    from polya_trainer.runtime.workspace import Workspace
    from polya_trainer.stages import midtrain, rl, training

    mod = midtrain if stage == "midtrain" else rl
    arm = "polya" if stage == "midtrain" else "vanilla"  # vanilla RL starts from the base model
    timing = timing_callback()
    with training.sigterm_flag() as flag:
        trainer, _, cb = mod.build_trainer(spec, arm, workdir, Reporter(stage, arm), flag,
                                           [timing])
        training.train(trainer, Workspace(workdir).checkpoints(arm, stage), cb)
    return timing.step_times(warmup)


def run_bare(stage: str, spec: Any, workdir: Path, warmup: int) -> list[float]:
    from datasets import Dataset, load_dataset
    from polya_trainer.data.heuristics import plain_messages
    from polya_trainer.verify.answers import is_correct
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer, SFTConfig, SFTTrainer

    name = spec.model.name
    tok = AutoTokenizer.from_pretrained(name)
    model = AutoModelForCausalLM.from_pretrained(name)
    timing = timing_callback()
    common = dict(output_dir=str(workdir / "bare"), max_steps=spec.stages.midtrain.max_steps,
                  per_device_train_batch_size=8, gradient_accumulation_steps=1, seed=3,
                  use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False,
                  dataloader_pin_memory=False, save_strategy="steps", save_steps=10_000,
                  save_total_limit=2, logging_steps=1, report_to="none", disable_tqdm=True)
    if stage == "midtrain":
        files = sorted(str(p) for p in (workdir / "polya/generate/data").glob("*.parquet"))
        raw = load_dataset("parquet", data_files=files, split="train")
        ds = Dataset.from_list([
            {"prompt": plain_messages(r["question"]),
             "completion": [{"role": "assistant", "content": r["completion"]}]} for r in raw])
        args = SFTConfig(**common, learning_rate=1e-4, num_train_epochs=1, max_length=256,
                         lr_scheduler_type="cosine", warmup_steps=0.03,
                         completion_only_loss=True)
        trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                             callbacks=[timing])
    else:
        rows = [json.loads(line) for line in
                Path(spec.stages.rl.dataset.source).read_text().splitlines()]
        ds = Dataset.from_list([{"prompt": plain_messages(r["question"]),
                                 "answer": str(r["answer"])} for r in rows])

        def reward(completions: list[Any], answer: list[str], **_: Any) -> list[float]:
            pairs = zip(completions, answer, strict=True)
            return [float(is_correct(c[0]["content"], a)) for c, a in pairs]

        args = GRPOConfig(**common, learning_rate=1e-5, num_train_epochs=1,
                          num_generations=4, max_completion_length=32, temperature=1.0,
                          beta=0.0, loss_type="dapo", scale_rewards="group",
                          reward_weights=[1.0], lr_scheduler_type="constant_with_warmup",
                          use_vllm=False)
        trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=args, train_dataset=ds,
                              processing_class=tok, callbacks=[timing])
    trainer.train()
    return timing.step_times(warmup)


def stats(xs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs),
            "spread_pct": 100 * (max(xs) - min(xs)) / statistics.median(xs)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, help="model directory (default: build the tiny one)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--stages", nargs="+", default=["midtrain", "rl"])
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/training.json")
    a = ap.parse_args()

    import torch
    from polya_trainer.toy import build_tiny_model, write_problem_file

    tmp = Path(tempfile.mkdtemp(prefix="bench-training-"))
    model = a.model or build_tiny_model(tmp / "tiny")
    problems = write_problem_file(tmp / "problems.jsonl", 256, seed=2)
    spec = make_spec(model, problems, a.steps)
    results: dict[str, Any] = {}
    for stage in a.stages:
        per: dict[str, list[float]] = {"ours": [], "bare": []}
        for rep in range(a.reps):
            order = ["ours", "bare"] if rep % 2 == 0 else ["bare", "ours"]
            for which in order:
                work = tmp / f"{stage}-{which}-{rep}"
                write_generated(work, 512)
                fn = run_ours if which == "ours" else run_bare
                times = fn(stage, spec, work, a.warmup)
                per[which].append(statistics.median(times))
                print(f"{stage} rep {rep} {which}: median step {per[which][-1] * 1e3:.1f} ms "
                      f"over {len(times)} steps", flush=True)
        ours, bare = stats(per["ours"]), stats(per["bare"])
        results[stage] = {"ours_s": ours, "bare_s": bare, "per_rep_ours_s": per["ours"],
                          "per_rep_bare_s": per["bare"],
                          "ratio": ours["median"] / bare["median"],
                          "goal_ratio": 1.03, "meets_goal": ours["median"] / bare["median"]
                          <= 1.03}
    out = {"benchmark": "training step time, ours vs bare TRL", "steps": a.steps,
           "warmup_steps_dropped": a.warmup, "repetitions": a.reps,
           "model": str(a.model) if a.model else "tiny (built)", "device":
           "cuda" if torch.cuda.is_available() else "cpu", "torch_threads":
           torch.get_num_threads(), "python": platform.python_version(),
           "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "stages": results}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: round(v["ratio"], 4) for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
