"""Answer-check throughput: polya_trainer.answers.check_many vs math-verify alone.

A GSM8K-style mix (mostly plain numbers in \\boxed{} or "#### n", some fractions and LaTeX,
about 25% wrong), k samples per question. Both sides get the same inputs in the same run:

* ours: ``check_many(predictions, gold_fields)`` with its caches cleared before each
  repetition (each gold is parsed once per repetition, as in a real generate stage);
* math-verify alone, as a naive user would call it: for every pair
  ``verify(parse(f"${gold}$"), parse(prediction))`` with the gold taken after "####".

Repetitions alternate between the two; median, min and max are reported, plus agreement with
the labels the mix was built with. Writes bench/results/answers.json.

Run: .venv/bin/python bench/answers.py  (about 30 s on 2 cores)
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "trainer"))

from polya_trainer.answers import check_many, clear_caches  # noqa: E402
from polya_trainer.artifacts import atomic_write_json  # noqa: E402

FILLER = [
    "Let's think step by step. ", "First, 12 x 3 = 36 apples in total. ",
    "Then she gives away 4, so 36 - 4 = 32 remain. ", "Each box holds 8, so 32 / 8 = 4 boxes. ",
    "The cost per item is $2.50. ", "Adding the two parts gives the total. ",
]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _solution(rng: random.Random) -> str:
    return "".join(rng.sample(FILLER, 3))


def _gold(rng: random.Random) -> tuple[str, str, list[str], list[str]]:
    """(kind, gold field, correct answer spellings, wrong answer spellings)."""
    r = rng.random()
    if r < 0.85:  # integer
        n = rng.choice([rng.randint(1, 200), rng.randint(200, 20_000)])
        field = f"Some work <<{n}-1={n - 1}>>{n - 1} and more.\n#### {n}"
        right = [str(n), f"{n:,}", f"\\${n}", f"{n} \\text{{ dollars}}", f"{n}.00"]
        wrong = [str(n + rng.choice([-10, -1, 1, 2, 100])), str(n * 2)]
        return "integer", field, right, wrong
    if r < 0.90:  # decimal
        cents = rng.randint(101, 9999)
        v = f"{cents // 100}.{cents % 100:02d}"
        return "decimal", f"#### {v}", [v, f"\\${v}"], [f"{cents // 100}.{(cents + 7) % 100:02d}"]
    if r < 0.95:  # fraction
        a, b = rng.randint(1, 9), rng.choice([2, 4, 5, 8])
        return ("fraction", f"\\frac{{{a}}}{{{b}}}",
                [f"\\frac{{{a}}}{{{b}}}", f"\\dfrac{{{2 * a}}}{{{2 * b}}}", f"{a}/{b}",
                 str(a / b)], [f"\\frac{{{a + 1}}}{{{b}}}"])
    k = rng.randint(2, 9)  # symbolic LaTeX
    return ("latex", f"{k}\\sqrt{{2}}",
            [f"{k}\\sqrt{{2}}", f"\\sqrt{{{2 * k * k}}}", f"{k} \\sqrt 2"],
            [f"{k + 1}\\sqrt{{2}}", f"\\sqrt{{{k}}}"])


def build_mix(n_questions: int, k: int, seed: int = 0) -> tuple[list[str], list[str], list[bool],
                                                                   dict[str, int]]:
    rng = random.Random(seed)
    preds: list[str] = []
    golds: list[str] = []
    labels: list[bool] = []
    kinds: dict[str, int] = {}
    for _ in range(n_questions):
        kind, field, right, wrong = _gold(rng)
        for _ in range(k):
            ok = rng.random() >= 0.25
            ans = rng.choice(right if ok else wrong)
            style = rng.random()
            body = _solution(rng)
            if style < 0.7 or kind in ("fraction", "latex"):
                pred = f"{body}The answer is \\boxed{{{ans}}}."
            else:  # GSM8K style
                pred = f"{body}\n#### {ans if kind == 'decimal' else ans.split(' ')[0]}"
                pred = pred.replace("\\$", "")
            preds.append(pred)
            golds.append(field)
            labels.append(ok)
            kinds[kind] = kinds.get(kind, 0) + 1
    return preds, golds, labels, kinds


def naive_math_verify(preds: list[str], golds: list[str]) -> list[bool]:
    from math_verify import parse, verify

    out = []
    for p, g in zip(preds, golds, strict=True):
        g = g.split("####")[-1].strip()
        out.append(bool(verify(parse(f"${g}$"), parse(p))))
    return out


def _stats(rates: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(rates), 1), "min": round(min(rates), 1),
            "max": round(max(rates), 1)}


def _agree(a: list[bool], b: list[bool]) -> float:
    return round(sum(x == y for x, y in zip(a, b, strict=True)) / len(a), 4)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=125)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "bench/results/answers.json"))
    ap.add_argument("--json", action="store_true", help="also print the result")
    args = ap.parse_args()

    preds, golds, labels, kinds = build_mix(args.questions, args.samples)
    n = len(preds)
    import logging

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    naive_math_verify(preds[:20], golds[:20])  # warm-up: imports, sympy caches
    check_many(preds[:20], golds[:20])

    ours_rates: list[float] = []
    mv_rates: list[float] = []
    ours_res: list[bool] = []
    mv_res: list[bool] = []
    for _ in range(args.reps):
        clear_caches()
        t = time.perf_counter()
        ours_res = check_many(preds, golds)
        ours_rates.append(n / (time.perf_counter() - t))
        t = time.perf_counter()
        mv_res = naive_math_verify(preds, golds)
        mv_rates.append(n / (time.perf_counter() - t))

    ours, mv = _stats(ours_rates), _stats(mv_rates)
    result = {
        "benchmark": "answer checks per second, GSM8K-style mix",
        "checks_per_rep": n,
        "questions": args.questions,
        "samples_per_question": args.samples,
        "mix": {"gold_kinds": kinds, "wrong_share": round(1 - sum(labels) / n, 3)},
        "repetitions": args.reps,
        "ours_check_many_serial": {"checks_per_s": ours,
                                   "accuracy_vs_labels": _agree(ours_res, labels)},
        "math_verify_alone_serial": {"checks_per_s": mv,
                                     "accuracy_vs_labels": _agree(mv_res, labels)},
        "agreement_ours_vs_math_verify": _agree(ours_res, mv_res),
        "ratio_median": round(ours["median"] / mv["median"], 1),
        "goal_checks_per_s": 2000,
        "goal_met": ours["median"] >= 2000,
        "versions": {"python": platform.python_version(), "math-verify": md.version("math-verify"),
                     "latex2sympy2_extended": md.version("latex2sympy2_extended"),
                     "sympy": md.version("sympy")},
        "machine": {"nproc": os.cpu_count(), "cpu_model": _cpu_model(),
                    "note": "2 cores shared with other jobs; both sides run serially in one "
                            "process, alternating per repetition"},
    }
    atomic_write_json(args.out, result)
    print(f"answers: ours {ours['median']:.0f}/s [{ours['min']:.0f}-{ours['max']:.0f}] vs "
          f"math-verify {mv['median']:.0f}/s [{mv['min']:.0f}-{mv['max']:.0f}] = "
          f"{result['ratio_median']}x on {n} checks x {args.reps} reps; accuracy "
          f"{result['ours_check_many_serial']['accuracy_vs_labels']} vs "
          f"{result['math_verify_alone_serial']['accuracy_vs_labels']} -> {args.out}")
    if args.json:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
