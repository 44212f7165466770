"""Seeded arithmetic word problems for the SmolLM2 experiment (docs/smollm2/).

What they are: short English word problems about a named person and countable things, in six
templates; one step (add, subtract, multiply) or two steps (add then subtract, multiply then
add, share equally after a purchase). Answers are whole numbers >= 0. Operands stay small
(``top``, 30 by default; factors at most 12) so that a 135M-parameter chat model solves some of
them: see docs/smollm2/README.md for the measured base pass@1 (the goal is 15-50%).

Disjoint by construction: :func:`split` draws one pool of distinct problems from one seeded
generator (two problems are the same when their template and numbers are, whatever the names)
and cuts it into the files, so no evaluation problem is a training or RL problem under new
names. The run's contamination check (spec.contamination) checks the text as well.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

from polya_trainer.runtime.artifacts import atomic_path

NAMES = ["Ava", "Ben", "Cleo", "Dan", "Eli", "Fay", "Gus", "Hana", "Ivan", "Jo", "Kai", "Lena",
         "Mia", "Noah", "Omar", "Pia", "Quinn", "Rosa", "Sam", "Tara"]
THINGS = ["apples", "books", "coins", "pens", "stamps", "shells", "cards", "marbles", "eggs",
          "stickers", "cookies", "pencils"]

Problem = tuple[str, tuple[int, ...], str, int]  # template, numbers, question, answer


def _add(r: random.Random, n: str, t: str, top: int) -> Problem:
    a, b = r.randint(1, top), r.randint(1, top)
    q = f"{n} has {a} {t}. {n} finds {b} more {t}. How many {t} does {n} have now?"
    return "add", (a, b), q, a + b


def _sub(r: random.Random, n: str, t: str, top: int) -> Problem:
    a = r.randint(3, 2 * top)
    b = r.randint(1, min(a - 1, top))
    q = f"{n} had {a} {t} and gave {b} of them to a friend. How many {t} does {n} have left?"
    return "sub", (a, b), q, a - b


def _mul(r: random.Random, n: str, t: str, top: int) -> Problem:
    a, b = r.randint(2, min(12, top)), r.randint(2, min(12, top))
    q = f"{n} buys {a} boxes of {t}. Each box holds {b} {t}. How many {t} does {n} buy?"
    return "mul", (a, b), q, a * b


def _add_sub(r: random.Random, n: str, t: str, top: int) -> Problem:
    a, b = r.randint(2, top), r.randint(2, top)
    c = r.randint(1, a + b - 1)
    q = (f"{n} has {a} {t}. {n} gets {b} more {t}, then gives away {c}. "
         f"How many {t} does {n} have now?")
    return "add_sub", (a, b, c), q, a + b - c


def _mul_add(r: random.Random, n: str, t: str, top: int) -> Problem:
    a, b, c = r.randint(2, min(9, top)), r.randint(2, min(9, top)), r.randint(1, top)
    q = (f"{n} has {c} {t}. {n} buys {a} packs with {b} {t} in each pack. "
         f"How many {t} does {n} have now?")
    return "mul_add", (a, b, c), q, a * b + c


def _share(r: random.Random, n: str, t: str, top: int) -> Problem:
    k, each = r.randint(2, min(6, top)), r.randint(2, min(9, top))
    have = r.randint(1, k * each - 1)
    q = (f"{n} has {have} {t} and buys {k * each - have} more. {n} shares all of them equally "
         f"among {k} friends. How many {t} does each friend get?")
    return "share", (k, each, have), q, each


TEMPLATES: dict[str, Callable[[random.Random, str, str, int], Problem]] = {
    "add": _add, "sub": _sub, "mul": _mul, "add_sub": _add_sub, "mul_add": _mul_add,
    "share": _share,
}
DEFAULT_MIX = {"add": 1, "sub": 1, "mul": 1, "add_sub": 1, "mul_add": 1, "share": 1}
ONE_STEP = {"add": 1, "sub": 1, "mul": 1}


def pool(n: int, seed: int, mix: dict[str, int] | None = None,
         top: int = 30) -> list[dict[str, str]]:
    """`n` distinct problems (distinct template and numbers), drawn with weights `mix`;
    operands at most `top` (factors and divisors at most 12)."""
    mix = mix or DEFAULT_MIX
    names, weights = list(mix), list(mix.values())
    r = random.Random(seed)
    seen: set[tuple[str, tuple[int, ...]]] = set()
    out: list[dict[str, str]] = []
    for _ in range(200 * n):
        if len(out) == n:
            return out
        template = r.choices(names, weights)[0]
        kind, numbers, question, answer = TEMPLATES[template](r, r.choice(NAMES),
                                                              r.choice(THINGS), top)
        if (kind, numbers) in seen:
            continue
        seen.add((kind, numbers))
        out.append({"id": f"wp-{seed}-{len(out)}", "template": kind, "question": question,
                    "answer": str(answer)})
    raise ValueError(f"only {len(out)} distinct problems for n={n} with mix {mix}")


def split(directory: str | Path, sizes: dict[str, int], seed: int = 0,
          mix: dict[str, int] | None = None, top: int = 30) -> dict[str, Path]:
    """One pool cut into JSONL files, `sizes` in order (e.g. train, rl, eval); each written
    atomically. Returns the paths."""
    rows = pool(sum(sizes.values()), seed, mix, top)
    out, at = {}, 0
    for name, size in sizes.items():
        path = Path(directory) / f"{name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text("".join(json.dumps(row) + "\n" for row in rows[at:at + size]))
        out[name], at = path, at + size
    return out
