"""Answer checking: accuracy against the regression suite, then throughput, ours vs math-verify.

Accuracy (tests/unit/test_answers_regression.py ``CASES``, each a gold, a response and the
expected verdict, with math-verify's known errors named):

* agreement of ours with math-verify alone (``verify(parse("$gold$"), parse(response))``,
  default settings), overall and on the cases where math-verify is right (must be 1.0);
* false credits (a wrong answer credited; must be 0), for both;
* the same on the boxed responses only (the format our prompts ask for), and on the responses
  written in the final-answer formats of common prompts (DAPO's "Answer:", Minerva's "Final
  Answer: The final answer is ...", GSM8K-CoT's "The answer is ...", lighteval's and Qwen's
  templates: the suite's kinds in ``PROMPT_FORMAT_KINDS``).

Throughput, both sides on the same inputs in the same run, k samples per question:

* a GSM8K-style mix (plain numbers in \\boxed{} or "#### n", some fractions and LaTeX, about
  25% wrong): ours ``check_many(responses, gold_fields)`` with caches cleared before each
  repetition (each gold is parsed once per repetition, as in a real stage), against
  math-verify alone on every pair. Goal: 2,000 checks/s on 2 cores, counted only when the
  accuracy above holds;
* a MATH-500-style mix (fractions, radicals, pi, intervals, tuples, equations, several boxes,
  text choices), reported as measured.

Repetitions alternate between the two sides; median, min and max are reported. The machine's
load average before and after is recorded: on a shared machine the rates are lower bounds.
Writes bench/results/answers.json.

Run: .venv/bin/python bench/answers.py  (about a minute on 2 idle cores)
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import importlib.util
import json
import logging
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "trainer"))
sys.path.insert(0, str(ROOT / "bench"))

from common import figure  # noqa: E402
from polya_trainer.runtime.artifacts import atomic_write_json  # noqa: E402
from polya_trainer.verify.answers import (  # noqa: E402
    check_many,
    check_many_verdicts,
    clear_caches,
    parse_gold,
)

PROMPT_FORMAT_KINDS = ("dapo", "minerva", "gsm8k_cot", "lighteval", "qwen")

FILLER = [
    "Let's think step by step. ", "First, 12 x 3 = 36 apples in total. ",
    "Then she gives away 4, so 36 - 4 = 32 remain. ", "Each box holds 8, so 32 / 8 = 4 boxes. ",
    "The cost per item is $2.50. ", "Adding the two parts gives the total. ",
]
MATH_FILLER = [
    "We substitute and simplify. ", "By the quadratic formula the roots follow. ",
    "Squaring both sides gives $x^2 + 2x + 1 = 4$. ", "The discriminant is $b^2 - 4ac$. ",
    "Using $\\sin^2 x + \\cos^2 x = 1$ we get the value. ", "Checking the endpoints: ",
]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_suite() -> list[Any]:
    """The regression cases, imported from the test module by path."""
    path = ROOT / "tests/unit/test_answers_regression.py"
    spec = importlib.util.spec_from_file_location("answers_regression", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return list(mod.CASES)


def math_verify_alone(gold_text: str, response: str) -> bool:
    from math_verify import parse, verify

    return bool(verify(parse(f"${gold_text}$"), parse(response)))


# --------------------------------------------------------------------------- accuracy


def _tally(cases: list[Any], ours: list[bool], mv: list[bool]) -> dict[str, Any]:
    n = len(cases)
    mv_right = [i for i, c in enumerate(cases) if mv[i] is c.expected]
    return {
        "cases": n,
        "ours_correct_verdicts": sum(ours[i] is c.expected for i, c in enumerate(cases)),
        "math_verify_correct_verdicts": len(mv_right),
        "agreement_ours_vs_math_verify": round(sum(a == b for a, b in zip(ours, mv,
                                                                          strict=True)) / n, 4),
        "agreement_where_math_verify_is_right": round(
            sum(ours[i] == mv[i] for i in mv_right) / len(mv_right), 4) if mv_right else None,
        "ours_false_credits": sum(ours[i] and not c.expected for i, c in enumerate(cases)),
        "math_verify_false_credits": sum(mv[i] and not c.expected for i, c in enumerate(cases)),
    }


def accuracy() -> dict[str, Any]:
    cases = load_suite()
    clear_caches()
    ours = check_many([c.response for c in cases], [c.gold for c in cases])
    mv = [math_verify_alone(parse_gold(c.gold).text, c.response) for c in cases]
    boxed = [i for i, c in enumerate(cases) if "\\boxed" in c.response]
    stated = [i for i, c in enumerate(cases) if c.kind in PROMPT_FORMAT_KINDS]
    out = {"all": _tally(cases, ours, mv),
           "boxed_responses": _tally([cases[i] for i in boxed], [ours[i] for i in boxed],
                                     [mv[i] for i in boxed]),
           "prompt_formats": _tally([cases[i] for i in stated], [ours[i] for i in stated],
                                    [mv[i] for i in stated])}
    out["disagreements"] = [
        {"kind": c.kind, "gold": c.gold, "response": c.response, "expected": c.expected,
         "ours": ours[i], "math_verify": mv[i], "why_math_verify_is_wrong": c.mv_wrong}
        for i, c in enumerate(cases) if ours[i] != mv[i]]
    return out


# --------------------------------------------------------------------------- mixes

Mix = tuple[list[str], list[str], list[bool], dict[str, int]]


def _gsm_gold(rng: random.Random) -> tuple[str, str, list[str], list[str]]:
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


def gsm8k_mix(n_questions: int, k: int, seed: int = 0) -> Mix:
    rng = random.Random(seed)
    preds: list[str] = []
    golds: list[str] = []
    labels: list[bool] = []
    kinds: dict[str, int] = {}
    for _ in range(n_questions):
        kind, field, right, wrong = _gsm_gold(rng)
        for _ in range(k):
            ok = rng.random() >= 0.25
            ans = rng.choice(right if ok else wrong)
            body = "".join(rng.sample(FILLER, 3))
            if rng.random() < 0.7 or kind in ("fraction", "latex"):
                pred = f"{body}The answer is \\boxed{{{ans}}}."
            else:  # GSM8K style
                pred = f"{body}\n#### {ans if kind == 'decimal' else ans.split(' ')[0]}"
                pred = pred.replace("\\$", "")
            preds.append(pred)
            golds.append(field)
            labels.append(ok)
            kinds[kind] = kinds.get(kind, 0) + 1
    return preds, golds, labels, kinds


def _math_gold(rng: random.Random) -> tuple[str, str, list[str], list[str]]:
    """(kind, gold, correct answers, wrong answers); an answer of the form "@a@b" is written
    as two boxes, "\\boxed{a} and \\boxed{b}"."""
    a, b = rng.randint(1, 12), rng.randint(2, 13)
    kind = rng.choice(["integer", "fraction", "radical", "pi", "interval", "tuple",
                       "equation", "two_boxes", "choice", "polynomial"])
    if kind == "integer":  # AIME-like
        n = rng.randint(0, 999)
        return kind, str(n), [str(n), f"{n:03d}"], [str(n + 1), str(999 - n or 1)]
    if kind == "fraction":
        return (kind, f"\\frac{{{a}}}{{{b}}}", [f"\\frac{{{a}}}{{{b}}}",
                f"\\dfrac{{{2 * a}}}{{{2 * b}}}", f"{a}/{b}"], [f"\\frac{{{a + b}}}{{{b}}}"])
    if kind == "radical":
        return (kind, f"{a}\\sqrt{{{b}}}", [f"{a}\\sqrt{{{b}}}", f"\\sqrt{{{a * a * b}}}"],
                [f"{a + 1}\\sqrt{{{b}}}", f"{b}\\sqrt{{{a + 1}}}"])
    if kind == "pi":
        return (kind, f"\\frac{{{a}\\pi}}{{{b}}}", [f"\\frac{{{a}\\pi}}{{{b}}}",
                f"\\frac{{{a}}}{{{b}}}\\pi"], [f"\\frac{{{a + 1}\\pi}}{{{b}}}"])
    if kind == "interval":
        return (kind, f"(-\\infty, {a}]", [f"(-\\infty,{a}]", f"(-\\infty, {a}]"],
                [f"(-\\infty,{a})", f"[{a}, \\infty)"])
    if kind == "tuple":
        return kind, f"({a}, {-b})", [f"({a},{-b})", f"\\left({a}, {-b}\\right)"], [
            f"({-b}, {a})", f"({a}, {b})"]
    if kind == "equation":
        return kind, f"y = {a}x + {b}", [f"y = {a}x + {b}", f"y = {b} + {a}x"], [
            f"y = {a}x - {b}", f"y = {b}x + {a}"]
    if kind == "two_boxes":
        return kind, f"{-a}, {b}", [f"@{-a}@{b}", f"{b}, {-a}"], [f"@{-a}@{b + 1}", f"{b}"]
    if kind == "choice":
        letter = rng.choice("ABCDE")
        other = rng.choice([x for x in "ABCDE" if x != letter])
        return kind, f"\\text{{({letter})}}", [f"\\text{{({letter})}}"], [f"\\text{{({other})}}"]
    return (kind, f"x^2 + {a + b}x + {a * b}", [f"(x+{a})(x+{b})", f"x^2+{a + b}x+{a * b}"],
            [f"(x+{a})(x-{b})"])


def math500_mix(n_questions: int, k: int, seed: int = 1) -> Mix:
    rng = random.Random(seed)
    preds: list[str] = []
    golds: list[str] = []
    labels: list[bool] = []
    kinds: dict[str, int] = {}
    for _ in range(n_questions):
        kind, gold, right, wrong = _math_gold(rng)
        for _ in range(k):
            ok = rng.random() >= 0.4
            ans = rng.choice(right if ok else wrong)
            body = "".join(rng.sample(MATH_FILLER, 3))
            if ans.startswith("@"):
                _, x, y = ans.split("@")
                final = f"$\\boxed{{{x}}}$ and $\\boxed{{{y}}}$"
            else:
                final = f"$\\boxed{{{ans}}}$"
            preds.append(f"{body}Therefore the answer is {final}.")
            golds.append(gold)
            labels.append(ok)
            kinds[kind] = kinds.get(kind, 0) + 1
    return preds, golds, labels, kinds


def naive_math_verify(preds: list[str], golds: list[str]) -> list[bool]:
    """math-verify alone, as a user would call it, the gold taken after "####"."""
    return [math_verify_alone(g.split("####")[-1].strip(), p)
            for p, g in zip(preds, golds, strict=True)]


def _stats(rates: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(rates), 1), "min": round(min(rates), 1),
            "max": round(max(rates), 1)}


def _agree(a: list[bool], b: list[bool]) -> float:
    return round(sum(x == y for x, y in zip(a, b, strict=True)) / len(a), 4)


def throughput(mix: Mix, reps: int) -> dict[str, Any]:
    preds, golds, labels, kinds = mix
    n = len(preds)
    naive_math_verify(preds[:10], golds[:10])  # warm-up: imports, sympy caches
    check_many(preds[:10], golds[:10])
    sides: dict[str, Callable[[], list[bool]]] = {
        "ours": lambda: check_many(preds, golds),
        "mv": lambda: naive_math_verify(preds, golds)}
    rates: dict[str, list[float]] = {"ours": [], "mv": []}
    results: dict[str, list[bool]] = {}
    for _ in range(reps):
        for side, fn in sides.items():
            clear_caches()
            t = time.perf_counter()
            results[side] = fn()
            rates[side].append(n / (time.perf_counter() - t))
    clear_caches()
    methods = check_many_verdicts(preds, golds)
    by_path = {p: sum(v.decided_by == p for v in methods) for p in ("exact", "math_verify",
                                                                     "none")}
    return {
        "checks_per_rep": n,
        "mix": {"gold_kinds": kinds, "wrong_share": round(1 - sum(labels) / n, 3)},
        "decided_by": by_path,
        "ours_check_many_serial": {"checks_per_s": _stats(rates["ours"]),
                                   "accuracy_vs_labels": _agree(results["ours"], labels)},
        "math_verify_alone_serial": {"checks_per_s": _stats(rates["mv"]),
                                     "accuracy_vs_labels": _agree(results["mv"], labels)},
        "agreement_ours_vs_math_verify": _agree(results["ours"], results["mv"]),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=125)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--math-questions", type=int, default=60)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "bench/results/answers.json"))
    ap.add_argument("--json", action="store_true", help="also print the result")
    args = ap.parse_args()
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    load_before = os.getloadavg()

    acc = accuracy()
    a, f = acc["all"], acc["prompt_formats"]
    accuracy_holds = (a["ours_false_credits"] == 0
                      and a["agreement_where_math_verify_is_right"] == 1.0)
    gsm = throughput(gsm8k_mix(args.questions, args.samples), args.reps)
    math = throughput(math500_mix(args.math_questions, args.samples), args.reps)
    load_after = os.getloadavg()

    g_ours = gsm["ours_check_many_serial"]["checks_per_s"]
    g_mv = gsm["math_verify_alone_serial"]["checks_per_s"]
    m_ours = math["ours_check_many_serial"]["checks_per_s"]
    m_mv = math["math_verify_alone_serial"]["checks_per_s"]
    speed = figure("answer checks per second, GSM8K mix (check_many vs math-verify alone)",
                   g_ours["median"], g_mv["median"], unit="checks/s", goal=2000,
                   ours_range=(g_ours["min"], g_ours["max"]),
                   baseline_range=(g_mv["min"], g_mv["max"]),
                   note="counts only while the suite's accuracy holds")
    speed["met"] = bool(speed["met"]) and accuracy_holds
    figures = [
        speed,
        figure("answer checks per second, MATH-500-style mix (reported as measured)",
               m_ours["median"], m_mv["median"], unit="checks/s",
               ours_range=(m_ours["min"], m_ours["max"]),
               baseline_range=(m_mv["min"], m_mv["max"])),
        figure("regression suite: agreement with math-verify where it is right",
               a["agreement_where_math_verify_is_right"], None, goal=1.0),
        figure("regression suite: correct verdicts (ours vs math-verify)",
               a["ours_correct_verdicts"], a["math_verify_correct_verdicts"], unit="cases",
               goal=a["math_verify_correct_verdicts"], note=f"of {a['cases']} cases"),
        figure("regression suite: false credits (ours vs math-verify)",
               a["ours_false_credits"], a["math_verify_false_credits"], unit="cases",
               goal=0, goal_op="<="),
        figure("final-answer formats of common prompts: correct verdicts (ours vs math-verify)",
               f["ours_correct_verdicts"], f["math_verify_correct_verdicts"], unit="cases",
               goal=f["math_verify_correct_verdicts"], note=f"of {f['cases']} cases"),
    ]
    result = {
        "benchmark": "answers",
        "figures": figures,
        "accuracy": acc,
        "accuracy_holds": accuracy_holds,
        "gsm8k_mix": gsm,
        "math500_mix": math,
        "samples_per_question": args.samples,
        "repetitions": args.reps,
        # Kept for readers of the earlier shape (bench/summary.py's adapter).
        "ours_check_many_serial": gsm["ours_check_many_serial"],
        "math_verify_alone_serial": gsm["math_verify_alone_serial"],
        "goal_checks_per_s": 2000,
        "goal_met": bool(speed["met"]),
        "versions": {"python": platform.python_version(), "math-verify": md.version("math-verify"),
                     "latex2sympy2_extended": md.version("latex2sympy2_extended"),
                     "sympy": md.version("sympy")},
        "machine": {"nproc": os.cpu_count(), "cpu_model": _cpu_model(),
                    "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in load_after],
                    "note": "serial, one process; both sides alternate per repetition; a load "
                            "average above the core count means other jobs shared the cores"},
    }
    atomic_write_json(args.out, result)
    print(f"answers: suite {a['ours_correct_verdicts']}/{a['cases']} (math-verify "
          f"{a['math_verify_correct_verdicts']}), false credits {a['ours_false_credits']} "
          f"(math-verify {a['math_verify_false_credits']}); GSM8K mix ours "
          f"{g_ours['median']:.0f}/s vs math-verify {g_mv['median']:.0f}/s; MATH mix ours "
          f"{m_ours['median']:.0f}/s vs {m_mv['median']:.0f}/s; load {load_before[0]:.1f} -> "
          f"{load_after[0]:.1f} -> {args.out}")
    if args.json:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
