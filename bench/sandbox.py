"""Cost of the code sandbox per program, against a bare isolated interpreter.

Both sides run the same small HumanEval-style program (a function plus its asserts) in a
fresh process, in the same run, alternating:

* bare: ``subprocess.run([sys.executable, "-I", "-c", program])``, no limits, no guard;
* sandbox: ``sandbox.run_program(program)`` (temp dir, rlimits, ``unshare -rn`` when it works
  here, the audit-hook prelude, output files, cleanup).

Also measured: 32 programs through ``run_many`` (the evaluate stage's path) against 32 bare
processes run with the same number of threads. Median, min and max per repetition; writes
bench/results/sandbox.json.

Run: .venv/bin/python bench/sandbox.py  (about 30 s on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "trainer"))

from polya_trainer import sandbox  # noqa: E402
from polya_trainer.runtime.artifacts import atomic_write_json  # noqa: E402

PROGRAM = '''
from typing import List


def running_max(xs: List[int]) -> List[int]:
    out, best = [], None
    for x in xs:
        best = x if best is None else max(best, x)
        out.append(best)
    return out


def check(candidate):
    assert candidate([]) == []
    assert candidate([1, 3, 2, 5]) == [1, 3, 3, 5]


check(running_max)
'''


def bare(program: str) -> bool:
    return subprocess.run([sys.executable, "-I", "-c", program], capture_output=True,
                          timeout=30).returncode == 0


def stats(xs: list[float]) -> dict[str, float]:
    return {"median_s": round(statistics.median(xs), 5), "min_s": round(min(xs), 5),
            "max_s": round(max(xs), 5), "n": len(xs)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    sandbox.isolation()  # probe once, outside the timings
    single = {"bare": [], "sandbox": []}
    for _ in range(args.reps):
        t = time.perf_counter()
        assert bare(PROGRAM)
        single["bare"].append(time.perf_counter() - t)
        t = time.perf_counter()
        assert sandbox.run_program(PROGRAM).passed
        single["sandbox"].append(time.perf_counter() - t)
    workers = os.cpu_count() or 2
    batch = {"bare": [], "sandbox": []}
    for _ in range(3):
        t = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            assert all(pool.map(bare, [PROGRAM] * args.batch))
        batch["bare"].append(time.perf_counter() - t)
        t = time.perf_counter()
        assert all(r.passed for r in sandbox.run_many([PROGRAM] * args.batch, workers=workers))
        batch["sandbox"].append(time.perf_counter() - t)
    result = {
        "what": "seconds per program (single) and per batch of programs (batch)",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "isolation": sandbox.isolation(),
        "single": {k: stats(v) for k, v in single.items()},
        "batch": {"programs": args.batch, "workers": workers,
                  **{k: stats(v) for k, v in batch.items()}},
    }
    result["single"]["overhead_ratio_median"] = round(
        result["single"]["sandbox"]["median_s"] / result["single"]["bare"]["median_s"], 3)
    out = ROOT / "bench" / "results" / "sandbox.json"
    atomic_write_json(out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
