"""Broken datasets and broken model directories fail early with messages that say why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from polya_trainer.backends.models import ModelError, load_causal_lm, load_tokenizer
from polya_trainer.data.loading import (
    DAPO_HEAD,
    DAPO_TAIL,
    DataError,
    gold_answer,
    keep_verifiable,
    load_qa,
    question_text,
)
from polya_trainer.spec import DatasetSpec, ModelSpec


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_local_jsonl_with_gsm8k_answers(tmp_path: Path) -> None:
    f = _jsonl(tmp_path / "d.jsonl", [{"question": "1+1?", "answer": "so 2\n#### 2"},
                                      {"question": "2*3?", "answer": "#### 1,200"}])
    rows = load_qa(DatasetSpec(source=str(f)))
    assert [r["answer"] for r in rows] == ["2", "1200"]
    assert load_qa(DatasetSpec(source=str(f), limit=1))[0]["question"] == "1+1?"


def test_dapo_wrapper_and_chat_questions_give_the_bare_problem(tmp_path: Path) -> None:
    """DAPO-Math-17k wraps each problem in its own answer-format instructions (the release's
    "prompt" is a list of one user message, open-r1's processed copy its text); questions are
    the bare problem, so the stage's prompt asks for one format."""
    problem = "Find $a + b$ if $a = 1$ and $b = 2$."
    wrapped = f"{DAPO_HEAD}\n\n{problem}\n\n{DAPO_TAIL}"
    assert question_text(wrapped) == problem
    assert question_text([{"content": wrapped, "role": "user"}]) == problem
    assert question_text([{"role": "system", "content": "Be brief."},
                          {"role": "user", "content": problem}]) == problem
    assert question_text("Natalia sold clips. Answer: how many?") == (
        "Natalia sold clips. Answer: how many?")  # anything else is left alone
    assert gold_answer({"ground_truth": "34", "style": "rule-lighteval/MATH_v2"}) == "34"
    f = _jsonl(tmp_path / "dapo.jsonl", [{"prompt": wrapped, "solution": "3"}])
    rows = load_qa(DatasetSpec(source=str(f), question="prompt", answer="solution"))
    assert rows[0]["question"] == problem and rows[0]["answer"] == "3"


def test_missing_column_names_the_field(tmp_path: Path) -> None:
    f = _jsonl(tmp_path / "d.jsonl", [{"q": "1+1?", "answer": "2"}])
    with pytest.raises(DataError, match=r"spec.dataset.question: column 'question' not in"):
        load_qa(DatasetSpec(source=str(f)))


def test_empty_dataset(tmp_path: Path) -> None:
    f = tmp_path / "empty.csv"
    f.write_text("question,answer\n")
    with pytest.raises(DataError, match="has no rows"):
        load_qa(DatasetSpec(source=str(f)))


def test_empty_and_huge_rows(tmp_path: Path) -> None:
    f = _jsonl(tmp_path / "d.jsonl", [{"question": "ok?", "answer": "1"},
                                      {"question": "  ", "answer": "2"}])
    with pytest.raises(DataError, match="row 1 has an empty 'question'"):
        load_qa(DatasetSpec(source=str(f)))
    g = _jsonl(tmp_path / "h.jsonl", [{"question": "x" * 200_000, "answer": "1"}])
    with pytest.raises(DataError, match="longer than"):
        load_qa(DatasetSpec(source=str(g)))


def test_non_numeric_answers(tmp_path: Path) -> None:
    rows = [{"id": str(i), "question": "q", "answer": a}
            for i, a in enumerate(["seven", "lots", "12", "none given"])]
    with pytest.raises(DataError, match=r"answer: 3 of 4 gold answers .* row 0: 'seven'"):
        keep_verifiable(rows, "spec.dataset")
    kept, dropped = keep_verifiable([*rows[1:3], {"id": "9", "question": "q", "answer": "3"}],
                                    "spec.dataset")
    assert dropped == 1 and [r["answer"] for r in kept] == ["12", "3"]
    math = [{"id": "0", "question": "q", "answer": a}
            for a in ["\\frac{1}{2}", "2x+1", "\\text{(C)}", "\\sqrt{3}", "n/a"]]
    assert keep_verifiable(math, "spec.dataset")[1] == 0


def test_unreadable_source_names_the_dataset(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    with pytest.raises(DataError, match="cannot load dataset"):
        load_qa(DatasetSpec(source=str(bad)))
    assert gold_answer("The answer\n#### 3,000") == "3000"


def test_broken_model_directories(tmp_path: Path, tiny_model_dir: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match=r"has no config\.json"):
        load_causal_lm(ModelSpec(name=str(empty)))
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny_model_dir.iterdir():
        if f.suffix != ".safetensors":
            (broken / f.name).write_bytes(f.read_bytes())
    with pytest.raises(ModelError, match="cannot load the weights"):
        load_causal_lm(ModelSpec(name=str(broken)))
    (broken / "tokenizer.json").write_text("{truncated")
    with pytest.raises(ModelError, match="cannot load the tokenizer"):
        load_tokenizer(ModelSpec(name=str(broken)))
    assert load_tokenizer(ModelSpec(name=str(tiny_model_dir))).pad_token is not None
