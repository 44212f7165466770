"""The SmolLM2 experiment's word problems (data/wordproblems.py): seeded, disjoint across
files by construction, and each answer follows from the numbers written in its question."""

from __future__ import annotations

import json
import re
from pathlib import Path

from polya_trainer.data import wordproblems as wp


def _rows(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_split_is_seeded_and_disjoint(tmp_path: Path) -> None:
    sizes = {"train": 20, "rl": 100, "eval": 50}
    a = wp.split(tmp_path / "a", sizes, seed=3, mix=wp.ONE_STEP, top=20)
    b = wp.split(tmp_path / "b", sizes, seed=3, mix=wp.ONE_STEP, top=20)
    assert [p.read_bytes() for p in a.values()] == [p.read_bytes() for p in b.values()]
    files = {name: _rows(path) for name, path in a.items()}
    assert {name: len(rows) for name, rows in files.items()} == sizes
    # Disjoint: no (template, numbers) in two files, whatever names the text uses.
    keys = {name: {(r["template"], tuple(re.findall(r"\d+", r["question"]))) for r in rows}
            for name, rows in files.items()}
    assert not keys["eval"] & (keys["train"] | keys["rl"]) and not keys["train"] & keys["rl"]
    assert len({r["id"] for rows in files.values() for r in rows}) == sum(sizes.values())


def test_answers_follow_from_the_question_text() -> None:
    ops = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
           "add_sub": lambda a, b, c: a + b - c, "mul_add": lambda c, a, b: a * b + c,
           "share": lambda have, more, k: (have + more) // k}
    rows = wp.pool(600, seed=11)
    assert {r["template"] for r in rows} == set(wp.TEMPLATES)
    for r in rows:
        numbers = [int(x) for x in re.findall(r"\d+", r["question"])]
        assert int(r["answer"]) == ops[r["template"]](*numbers) >= 0, r
        if r["template"] == "share":  # shared equally: no remainder
            assert sum(numbers[:2]) % numbers[2] == 0, r
    assert max(int(x) for r in wp.pool(300, seed=1, mix=wp.ONE_STEP, top=10)
               for x in re.findall(r"\d+", r["question"])) <= 20


def test_too_few_distinct_problems_is_an_error() -> None:
    import pytest

    with pytest.raises(ValueError, match="distinct problems"):
        wp.pool(400, seed=0, mix={"mul": 1}, top=12)  # only 11 x 11 products exist
