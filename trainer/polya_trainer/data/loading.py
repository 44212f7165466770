"""Loading question/answer data with `datasets`, from a hub id or a local file/directory.

The same code loads GSM8K from the hub in a cluster and a JSONL fixture in tests; broken
data fails here with a message that names the dataset and the column.

Questions are bare problems: a question given as chat messages gives its (last) user turn, and
DAPO-Math-17k's answer-format wrapper is removed (:func:`question_text`), so that every stage
asks for the answer in one format, its own (``heuristics.ANSWER_REQUEST``: ``\\boxed{}``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from polya_trainer.spec import DatasetSpec

LOCAL_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
MAX_FIELD_CHARS = 100_000
GSM8K_TAIL = re.compile(r"####\s*(.+?)\s*$", re.S)

# DAPO-Math-17k's wrapper around every problem (BytedTsinghua-SIA/DAPO-Math-17k, column
# "prompt", a list of one user message; open-r1/DAPO-Math-17k-Processed's create_dataset.py
# copies that message's text into its own "prompt" column and the reward model's
# "ground_truth" into "solution").
DAPO_HEAD = ("Solve the following math problem step by step. The last line of your response "
             "should be of the form Answer: $Answer (without quotes) where $Answer is the "
             "answer to the problem.")
DAPO_TAIL = 'Remember to put your answer on its own line after "Answer:".'


class DataError(ValueError):
    """The dataset cannot be used; the message says which and why."""


def load_rows(source: str, split: str = "train", config: str | None = None,
              revision: str | None = None) -> Any:
    """A `datasets.Dataset` from a hub id, a local data directory or a single file."""
    from datasets import load_dataset

    path = Path(source)
    try:
        if path.suffix in LOCAL_FORMATS and path.is_file():
            return load_dataset(LOCAL_FORMATS[path.suffix], data_files=str(path), split="train")
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix in LOCAL_FORMATS)
            if not files:
                return load_dataset(str(path), config, split=split)
            fmt = LOCAL_FORMATS[files[0].suffix]
            return load_dataset(fmt, data_files=[str(f) for f in files], split="train")
        return load_dataset(source, config, split=split, revision=revision)
    except DataError:
        raise
    except Exception as exc:  # datasets raises many types; say which dataset failed
        if "corresponds to no data" in str(exc):
            raise DataError(f"dataset {source!r} split {split!r} has no rows") from exc
        raise DataError(f"cannot load dataset {source!r} (split {split!r}): "
                        f"{type(exc).__name__}: {exc}") from exc


def question_text(raw: Any) -> str:
    """The problem in a question field: chat messages give their last user turn, and
    DAPO-Math-17k's answer-format instructions around the problem are removed."""
    if isinstance(raw, list):
        users = [str(m.get("content") or "") for m in raw
                 if isinstance(m, dict) and m.get("role", "user") == "user"]
        raw = users[-1] if users else ""
    text = str(raw).strip()
    if text.startswith(DAPO_HEAD):
        text = text[len(DAPO_HEAD):].strip()
    if text.endswith(DAPO_TAIL):
        text = text[:-len(DAPO_TAIL)].strip()
    return text


def gold_answer(raw: Any) -> str:
    """The final answer inside a gold field (GSM8K's `... #### 72` becomes `72`; a reward-model
    record such as DAPO-Math-17k's ``{"ground_truth": "34", ...}`` gives its ground truth)."""
    if isinstance(raw, dict) and "ground_truth" in raw:
        raw = raw["ground_truth"]
    text = str(raw).strip()
    m = GSM8K_TAIL.search(text)
    return m.group(1).replace(",", "").strip() if m else text


_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")
_TEXT = re.compile(r"\\(?:text|mathrm|textbf)\{[^}]*\}")


def verifiable(answer: str) -> bool:
    """Whether a gold answer is a number or a math expression the verifier can compare.

    Plain words ("seven", "none") are not: math-verify would read them as products of
    symbols. Words inside \\text{...} (multiple-choice letters, days) are allowed.
    """
    from polya_trainer.verify.answers import parse_gold

    gold = parse_gold(answer)
    if gold.number is not None:
        return True
    if _WORD.search(_TEXT.sub("", gold.text)):
        return False
    return bool(gold.parsed())


def keep_verifiable(rows: list[dict[str, str]], what: str) -> tuple[list[dict[str, str]], int]:
    """Drop rows whose gold answer cannot be verified; fail when most of them are like that."""
    kept = [r for r in rows if verifiable(r["answer"])]
    dropped = len(rows) - len(kept)
    if len(kept) * 2 < len(rows):
        bad = next(r for r in rows if not verifiable(r["answer"]))
        raise DataError(f"{what}.answer: {dropped} of {len(rows)} gold answers are neither "
                        f"numbers nor math expressions (e.g. row {bad['id']}: "
                        f"{bad['answer'][:80]!r}); check the answer column")
    return kept, dropped


def load_qa(ds: DatasetSpec, what: str = "spec.dataset") -> list[dict[str, str]]:
    """Rows of {"id", "question", "answer"} with clear errors for unusable data."""
    rows = load_rows(ds.source, ds.split, ds.config, revision=ds.revision)
    columns = set(rows.column_names)
    for role, col in (("question", ds.question), ("answer", ds.answer)):
        if col not in columns:
            raise DataError(f"{what}.{role}: column {col!r} not in dataset {ds.source!r} "
                            f"(columns: {', '.join(sorted(columns)) or 'none'})")
    if ds.limit is not None:
        rows = rows.select(range(min(ds.limit, len(rows))))
    if len(rows) == 0:
        raise DataError(f"{what}: dataset {ds.source!r} split {ds.split!r} has no rows")
    out = []
    for i, row in enumerate(rows):
        q, a = row[ds.question], row[ds.answer]
        question = question_text(q) if q is not None else ""
        if not question:
            raise DataError(f"{what}: row {i} has an empty {ds.question!r}")
        if a is None or not str(a).strip():
            raise DataError(f"{what}: row {i} has an empty {ds.answer!r}")
        if len(str(q)) > MAX_FIELD_CHARS or len(str(a)) > MAX_FIELD_CHARS:
            raise DataError(f"{what}: row {i} is longer than {MAX_FIELD_CHARS} characters")
        out.append({"id": str(row.get("id", i)), "question": question,
                    "answer": gold_answer(a)})
    return out
