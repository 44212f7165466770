"""Cost of the data-insight and contamination checks on CPU (lexical measures only).

* datastats: ``dedupe_rows`` + ``data_stats`` (lexical Vendi per question) over synthetic
  solutions: Q questions x H heuristics, ~120-word solutions drawn from a shared vocabulary
  (so near-duplicates are rare, as with real sampled solutions).
* contamination: building the 13-gram index of B benchmark questions and scanning S training
  questions (~40 words each).

Median of 3 repetitions with the load average recorded (a shared machine gives upper bounds
on time). Writes bench/results/datastats.json.

Run: .venv/bin/python bench/datastats.py  (one to two minutes on 2 shared cores)
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "trainer"))

from polya_trainer.data import contamination, datastats

VOCAB = [f"w{i}" for i in range(3000)] + [str(i) for i in range(100)]


def text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(n))


def timed(fn, reps: int = 3) -> list[float]:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    rng = random.Random(0)
    results: dict = {"load_before": os.getloadavg()}
    for q, h in ((500, 16), (200, 64)):
        rows = [{"question_id": str(i), "heuristic": f"h{j}", "completion": text(rng, 120),
                 "score": rng.random(), "num_tokens": 150} for i in range(q) for j in range(h)]
        counters = {f"h{j}": {"pairs": q, "accepted": q} for j in range(h)}

        def run(rows=rows, counters=counters) -> None:
            kept, _ = datastats.dedupe_rows(rows, "near")
            datastats.data_stats(kept, counters)

        secs = timed(run)
        results[f"datastats_{q}q_x_{h}h"] = {
            "solutions": q * h, "seconds_median": round(statistics.median(secs), 3),
            "seconds": [round(s, 3) for s in secs],
            "solutions_per_second": round(q * h / statistics.median(secs), 1)}
    bench = {"b": [(str(i), text(rng, 60)) for i in range(5000)]}
    train = [(str(i), text(rng, 40)) for i in range(7500)]
    idx_secs = timed(lambda: contamination.Index(bench, 13))
    index = contamination.Index(bench, 13)
    scan_secs = timed(lambda: contamination.scan(train, index))
    results["contamination_index_5000_bench_questions"] = {
        "seconds_median": round(statistics.median(idx_secs), 3)}
    results["contamination_scan_7500_questions"] = {
        "seconds_median": round(statistics.median(scan_secs), 3),
        "questions_per_second": round(7500 / statistics.median(scan_secs), 1)}
    results["load_after"] = os.getloadavg()
    results["cpus"] = os.cpu_count()
    out = Path(__file__).resolve().parent / "results" / "datastats.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
