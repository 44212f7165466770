"""Sharded generation: one fixed toy workload with 1 and with 3 shards (local processes).

The workload: Q toy word problems x 2 heuristics x 4 samples, up to 48 new tokens, 2 rounds,
hf backend on the cached toy model, ``shardSize`` 4, no adherence scorer. Each run is the pod
entrypoint (``python -m polya_trainer generate``) in fresh processes: 1 process, or 3 at once
with ``JOB_COMPLETION_INDEX`` 0..2 and each limited to cores/3 torch threads (at least 1).
Wall time runs from the first start to the last exit (model loads and the merge included);
tokens are the card's ``tokens_generated`` (the same for both: the data is byte-identical,
which the script checks). The load average is recorded: on a shared machine the times are
upper bounds.

Run: .venv/bin/python bench/sharding.py [--questions 48]  (a few minutes on 2 cores)
Writes bench/results/sharding.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "bench" / "results" / "sharding.json"
sys.path.insert(0, str(ROOT / "trainer"))


def write_run(path: Path, model: Path, data: Path, shards: int) -> None:
    doc = {"apiVersion": "polya.dev/v1alpha1", "kind": "PolyaRun",
           "metadata": {"name": f"bench-{shards}"},
           "spec": {"model": {"name": str(model), "dtype": "float32"},
                    "dataset": {"source": str(data)},
                    "heuristics": {"ids": ["working_backwards", "decomposing_recombining"]},
                    "arms": ["polya"], "seed": 1,
                    "stages": {"generate": {
                        "backend": "hf", "exemplars": 0, "samplesPerHeuristic": 4,
                        "temperature": 1.0, "topP": 1.0, "maxNewTokens": 48, "rounds": 2,
                        "shardSize": 4, "batchSize": 16, "scorer": {"type": "none"},
                        "resources": {"gpus": 0}, "shards": shards}}}}
    path.write_text(json.dumps(doc))


def run(spec: Path, workdir: Path, shards: int) -> dict:
    # The stage cache off: both runs share a cache root and the shard count is not part of
    # the key, so the second run would otherwise be restored, not generated.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "POLYA_STAGE_CACHE": "0"}
    cmd = [sys.executable, "-m", "polya_trainer", "generate", "--spec", str(spec),
           "--workdir", str(workdir), "--arm", "polya"]
    threads = max(1, (os.cpu_count() or 1) // shards)
    t0 = time.perf_counter()
    procs = []
    for index in range(shards):
        penv = dict(env)
        if shards > 1:
            penv.update(JOB_COMPLETION_INDEX=str(index), OMP_NUM_THREADS=str(threads))
        procs.append(subprocess.Popen(cmd, env=penv, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"generate failed ({p.returncode}): {err.decode()[-2000:]}")
    wall = time.perf_counter() - t0
    card = json.loads((workdir / "polya" / "generate" / "card.json").read_text())
    if "cachedFrom" in json.loads((workdir / "polya" / "generate" / "MANIFEST.json")
                                  .read_text()).get("outputs", {}):
        raise SystemExit("the stage was restored from the stage cache, not generated")
    tokens = card["tokens_generated"]
    return {"processes": shards, "torch_threads_per_process": threads if shards > 1 else None,
            "wall_seconds": round(wall, 2), "tokens": tokens,
            "tokens_per_second_wall": round(tokens / wall, 1),
            "generation_seconds_summed_over_shards": card["generation_seconds"],
            "accepted": card["counts"]["accepted"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=48)
    args = ap.parse_args()
    from polya_trainer.toy import TOY_VERSION, build_toy_model, word_problems

    model = build_toy_model(ROOT / ".cache" / f"toy-model-v{TOY_VERSION}")
    out: dict = {"benchmark": "sharding", "cpus": os.cpu_count(),
                 "load_before": [round(x, 2) for x in os.getloadavg()],
                 "workload": {"questions": args.questions, "heuristics": 2, "samples": 4,
                              "max_new_tokens": 48, "rounds": 2, "shard_size": 4,
                              "backend": "hf (toy model, CPU)"}}
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        data = tmpd / "q.jsonl"
        data.write_text("".join(json.dumps({"question": r["question"], "answer": r["answer"]})
                                + "\n" for r in word_problems(args.questions, 3)))
        files = {}
        for shards in (1, 3):
            spec, work = tmpd / f"run-{shards}.json", tmpd / f"work-{shards}"
            write_run(spec, model, data, shards)
            out[f"shards_{shards}"] = run(spec, work, shards)
            files[shards] = {p.name: p.read_bytes() for p in
                             sorted((work / "polya" / "generate" / "data").glob("*.parquet"))}
        out["identical_data"] = bool(files[1]) and files[1] == files[3]
    out["speedup_wall"] = round(out["shards_1"]["wall_seconds"]
                                / out["shards_3"]["wall_seconds"], 2)
    out["load_after"] = [round(x, 2) for x in os.getloadavg()]
    RESULT.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    print(json.dumps(out, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
