"""Evaluation benchmarks: where each comes from, how a row becomes a prompt, how it is scored.

Every built-in benchmark is a declared `datasets` source (hub id, config, split), an adapter
from a row to an :class:`Item` (chat messages + a JSON-able reference) and a scorer of its
kind:

========================  ==============================  ======  =======
name                      source (id, config, split)      kind    columns
========================  ==============================  ======  =======
gsm8k                     openai/gsm8k, main, test        math    question, answer ("... #### n")
math500                   HuggingFaceH4/MATH-500, test    math    problem, answer, unique_id
aime24                    HuggingFaceH4/aime_2024, train  math    problem, answer, id
aime25                    yentinglin/aime_2025, train     math    problem, answer, id
amc23                     math-ai/amc23, test             math    question (or problem), answer
minerva_math              math-ai/minervamath, test       math    question, answer
humaneval                 openai/openai_humaneval, test   code    task_id, prompt, test, entry_point
musr_murder_mysteries     TAUR-Lab/MuSR, murder_mysteries choice  narrative, question, choices,
musr_object_placements    TAUR-Lab/MuSR, object_placements        answer_index (answer_choice)
musr_team_allocation      TAUR-Lab/MuSR, team_allocation
========================  ==============================  ======  =======

``musr`` names the group of its three splits (reported separately, as in the paper). The six
``math`` benchmarks are the paper's (GSM8K, MATH-500, AIME24, AIME25, AMC23, Minerva Math): the
report's headline averages pass@k over them only; HumanEval and MuSR are reported apart.

**Revisions.** Every source has a ``revision`` (hub branch, tag or commit) passed to
``load_dataset``; ``evaluate.revisions`` in the spec pins any of them, and results record the
revision each number came from (``None``: the hub's default branch at load time).

**Local mirrors.** When ``POLYA_BENCHMARK_DIR`` is set and holds ``<name>.jsonl`` (or
``.json``/``.parquet``/``.csv``; for MuSR ``musr_<split>.jsonl`` or ``musr/<split>.jsonl``),
that file is loaded instead of the hub id, through the same ``data.load_rows`` call
(``datasets.load_dataset``). Air-gapped clusters mirror the hub this way; tests use fixtures.

**Custom benchmarks** (``spec.stages.evaluate.custom``) read a local file (or dataset id) with
the named question/answer columns and are scored as math, code (the answer column holds the
test code; ``entry_point`` column or the prompt's last ``def``) or choice (a ``choices``
column; the answer is an index or the option's text).
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from polya_trainer.data.loading import gold_answer, load_rows
from polya_trainer.spec import CustomBenchmark

Kind = Literal["math", "code", "choice"]
ENV_DIR = "POLYA_BENCHMARK_DIR"
LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")

CODE_INSTRUCTION = ("Complete the following Python function. Reply with the complete function "
                    "(including the signature) in one ```python code block.")
CHOICE_INSTRUCTION = ("Think step by step, then give the number of the correct option in "
                      "\\boxed{}, e.g. \\boxed{1}.")


@dataclass(frozen=True)
class Item:
    """One question: the chat messages to send and what scoring needs."""

    id: str
    messages: list[dict[str, str]]
    reference: dict[str, Any]
    """math: {"answer"}; code: {"prompt", "test", "entry_point"}; choice: {"choices", "index"}."""


@dataclass(frozen=True)
class Source:
    """Where a benchmark's rows come from."""

    hub_id: str
    split: str
    config: str | None = None
    local: str = ""
    """File stem under POLYA_BENCHMARK_DIR (defaults to the benchmark name)."""
    revision: str | None = None
    """Hub revision to load (None: the default branch, i.e. unpinned)."""


Adapter = Callable[[dict[str, Any], int], Item]


@dataclass(frozen=True)
class Benchmark:
    name: str
    kind: Kind
    source: Source
    adapter: Adapter = field(repr=False)
    mirrorable: bool = True
    """Whether a file under POLYA_BENCHMARK_DIR may stand in for the source."""

    def local_file(self) -> Path | None:
        """The local mirror under POLYA_BENCHMARK_DIR, if there is one."""
        root = os.environ.get(ENV_DIR)
        if not root or not self.mirrorable:
            return None
        stem = self.source.local or self.name
        candidates = [Path(root) / f"{stem}{s}" for s in LOCAL_SUFFIXES]
        if "_" in stem:  # musr_murder_mysteries -> musr/murder_mysteries.jsonl
            group, _, split = stem.partition("_")
            candidates += [Path(root) / group / f"{split}{s}" for s in LOCAL_SUFFIXES]
        return next((p for p in candidates if p.is_file()), None)

    @property
    def headline(self) -> bool:
        """Whether the benchmark counts in the headline average (math benchmarks only)."""
        return self.kind == "math"

    def pinned(self, revision: str | None) -> Benchmark:
        """This benchmark with its source pinned to `revision` (None keeps it)."""
        if revision is None:
            return self
        return replace(self, source=replace(self.source, revision=revision))

    def load(self, limit: int | None = None) -> list[Item]:
        """The first `limit` items (all when None), from the local mirror or the source."""
        local = self.local_file()
        rows = (load_rows(str(local)) if local is not None
                else load_rows(self.source.hub_id, self.source.split, self.source.config,
                               revision=self.source.revision))
        if limit is not None:
            rows = rows.select(range(min(limit, len(rows))))
        items = [self.adapter(dict(row), i) for i, row in enumerate(rows)]
        if not items:
            raise ValueError(f"benchmark {self.name}: no rows in {local or self.source.hub_id}")
        return items

    def score(self, item: Item, completions: Sequence[str], **opts: Any) -> list[bool]:
        """Whether each completion answers `item` correctly."""
        return score(self.kind, item, completions, **opts)

    def verdicts(self, item: Item, completions: Sequence[str],
                 **opts: Any) -> list[tuple[bool, str]]:
        """(correct, extraction method) for each completion."""
        return verdicts(self.kind, item, completions, **opts)


# --------------------------------------------------------------------------- prompts


def math_messages(question: str) -> list[dict[str, str]]:
    """The plain question asking for a boxed answer (shared with generation and training)."""
    try:
        from polya_trainer.data.heuristics import plain_messages

        return plain_messages(question)
    except ImportError:  # pragma: no cover - the catalog ships with the package
        return [{"role": "user", "content": f"{question.strip()}\n\n"
                 "Put the final answer in \\boxed{}."}]


def code_messages(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{CODE_INSTRUCTION}\n\n```python\n{prompt.rstrip()}\n```"}]


def choice_messages(narrative: str, question: str, choices: Sequence[str]) -> list[dict[str, str]]:
    options = "\n".join(f"{i}. {c}" for i, c in enumerate(choices, 1))
    parts = [narrative.strip(), question.strip(), f"Options:\n{options}", CHOICE_INSTRUCTION]
    return [{"role": "user", "content": "\n\n".join(p for p in parts if p)}]


# --------------------------------------------------------------------------- adapters


def _first(row: dict[str, Any], *names: str) -> Any:
    for n in names:
        if n in row and row[n] is not None and str(row[n]).strip() != "":
            return row[n]
    raise KeyError(f"none of the columns {names} in row with columns {sorted(row)}")


def _row_id(row: dict[str, Any], index: int, *names: str) -> str:
    for n in names:
        if row.get(n) not in (None, ""):
            return str(row[n])
    return str(index)


def _math_adapter(question_cols: tuple[str, ...], id_cols: tuple[str, ...]) -> Adapter:
    def adapt(row: dict[str, Any], index: int) -> Item:
        question = str(_first(row, *question_cols))
        answer = gold_answer(_first(row, "answer"))
        return Item(_row_id(row, index, *id_cols), math_messages(question), {"answer": answer})

    return adapt


def _humaneval(row: dict[str, Any], index: int) -> Item:
    ref = {"prompt": row["prompt"], "test": row["test"], "entry_point": row["entry_point"]}
    return Item(_row_id(row, index, "task_id"), code_messages(row["prompt"]), ref)


def parse_choices(raw: Any) -> list[str]:
    """MuSR stores choices as the text of a Python list ("['Mack', 'Taylor']")."""
    value = ast.literal_eval(raw) if isinstance(raw, str) else raw
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(f"choices must be a non-empty list, got {raw!r}")
    return [str(v) for v in value]


def _musr(row: dict[str, Any], index: int) -> Item:
    choices = parse_choices(row["choices"])
    if row.get("answer_index") is not None and str(row["answer_index"]).strip() != "":
        answer = int(row["answer_index"])
    else:
        answer = [c.lower() for c in choices].index(str(row["answer_choice"]).strip().lower())
    messages = choice_messages(str(row.get("narrative") or ""), str(row["question"]), choices)
    return Item(_row_id(row, index, "id"), messages, {"choices": choices, "index": answer})


# --------------------------------------------------------------------------- scoring


_ANSWER_IS = re.compile(r"answer\s*(?:is|:)\s*[:\-]?\s*\**\s*([^\n.]+)", re.I)


def parse_choice(text: str, choices: Sequence[str]) -> int | None:
    """The 0-based option a response picks: a number (1-based), a letter, or the option's
    text, taken from the last \\boxed{} (else "answer is ...", else the last line)."""
    from polya_trainer.verify.answers import last_boxed

    raw = last_boxed(text)
    if raw is None:
        found = _ANSWER_IS.findall(text)
        raw = found[-1] if found else (text.strip().splitlines() or [""])[-1]
    raw = re.sub(r"\\text\{([^}]*)\}", r"\1", raw).strip().strip("*").strip()
    lowered = [c.strip().lower() for c in choices]
    key = re.sub(r"^(?:option|choice)\s*", "", raw, flags=re.I).strip(" ().:").strip()
    if key.isdigit() and 1 <= int(key) <= len(choices):
        return int(key) - 1
    if len(key) == 1 and key.isalpha() and key.upper() < chr(ord("A") + len(choices)):
        return ord(key.upper()) - ord("A")
    if key.lower() in lowered:
        return lowered.index(key.lower())
    hits = [i for i, c in enumerate(lowered) if c and re.search(rf"\b{re.escape(c)}\b",
                                                                 raw.lower())]
    return hits[0] if len(hits) == 1 else None


def verdicts(kind: Kind, item: Item, completions: Sequence[str], *,
             allow_fallback: bool = False, **code_opts: Any) -> list[tuple[bool, str]]:
    """(correct, how the answer was read) for each completion of `item`, under the scorer of
    `kind`. Math: the answer-extraction method (``answers.Method``: boxed, gsm8k, last_number
    with the opt-in fallback, none); code: "tests"; choice: "choice"."""
    if kind == "math":
        from polya_trainer.verify.answers import check_many_verdicts, parse_gold

        gold = parse_gold(item.reference["answer"])
        return [(v.correct, v.method) for v in check_many_verdicts(
            list(completions), [gold] * len(completions), allow_fallback=allow_fallback)]
    if kind == "code":
        from polya_trainer.verify.sandbox import check_humaneval

        ref = item.reference
        return [(ok, "tests") for ok in check_humaneval(
            ref["prompt"], completions, ref["test"], ref["entry_point"], **code_opts)]
    if kind == "choice":
        choices, index = item.reference["choices"], item.reference["index"]
        return [(parse_choice(c, choices) == index, "choice") for c in completions]
    raise ValueError(f"unknown benchmark kind {kind!r}")


def score(kind: Kind, item: Item, completions: Sequence[str], *, allow_fallback: bool = False,
          **code_opts: Any) -> list[bool]:
    """Correctness of each completion for `item` under the scorer of `kind`."""
    return [ok for ok, _ in verdicts(kind, item, completions, allow_fallback=allow_fallback,
                                     **code_opts)]


EXTRACTION = {
    "math": "final answer from \\boxed{} (or '#### n'), compared by math-verify",
    "code": "the completion's Python code run against the benchmark's tests (sandbox)",
    "choice": "option number, letter or text from \\boxed{} (else 'answer is ...')",
}
"""How each kind reads an answer (recorded with every number)."""


# --------------------------------------------------------------------------- registry


MUSR_SPLITS = ("murder_mysteries", "object_placements", "team_allocation")

REGISTRY: dict[str, Benchmark] = {
    b.name: b for b in [
        Benchmark("gsm8k", "math", Source("openai/gsm8k", "test", "main"),
                  _math_adapter(("question",), ("id",))),
        Benchmark("math500", "math", Source("HuggingFaceH4/MATH-500", "test"),
                  _math_adapter(("problem",), ("unique_id", "id"))),
        Benchmark("aime24", "math", Source("HuggingFaceH4/aime_2024", "train"),
                  _math_adapter(("problem", "question"), ("id",))),
        Benchmark("aime25", "math", Source("yentinglin/aime_2025", "train"),
                  _math_adapter(("problem", "question"), ("id",))),
        Benchmark("amc23", "math", Source("math-ai/amc23", "test"),
                  _math_adapter(("question", "problem"), ("id",))),
        Benchmark("minerva_math", "math", Source("math-ai/minervamath", "test"),
                  _math_adapter(("question", "problem"), ("id", "idx"))),
        Benchmark("humaneval", "code", Source("openai/openai_humaneval", "test"), _humaneval),
        *[Benchmark(f"musr_{s}", "choice", Source("TAUR-Lab/MuSR", s), _musr)
          for s in MUSR_SPLITS],
    ]
}
GROUPS: dict[str, tuple[str, ...]] = {"musr": tuple(f"musr_{s}" for s in MUSR_SPLITS)}


def _entry_point(prompt: str) -> str:
    names = re.findall(r"^def\s+([A-Za-z_]\w*)\s*\(", prompt, re.M)
    if not names:
        raise ValueError("code benchmark row has no entry_point column and its prompt no def")
    return names[-1]


def custom_benchmark(c: CustomBenchmark, base: str | Path | None = None) -> Benchmark:
    """A user benchmark from a local file (relative paths: cwd, then `base`) or dataset id."""
    path = Path(c.path)
    if not path.is_absolute() and not path.exists() and base is not None \
            and (Path(base) / path).exists():
        path = Path(base) / path
    qcol, acol = c.question, c.answer

    def adapt(row: dict[str, Any], index: int) -> Item:
        rid = _row_id(row, index, "id", "task_id")
        if c.kind == "math":
            return Item(rid, math_messages(str(row[qcol])), {"answer": gold_answer(row[acol])})
        if c.kind == "code":
            prompt = str(row[qcol])
            entry = str(row.get("entry_point") or _entry_point(prompt))
            return Item(rid, code_messages(prompt),
                        {"prompt": prompt, "test": str(row[acol]), "entry_point": entry})
        choices = parse_choices(row["choices"])
        raw = row[acol]
        index_ = int(raw) if str(raw).strip().lstrip("-").isdigit() else \
            [x.lower() for x in choices].index(str(raw).strip().lower())
        return Item(rid, choice_messages(str(row.get("narrative") or ""), str(row[qcol]),
                                         choices), {"choices": choices, "index": index_})

    return Benchmark(c.name, c.kind, Source(str(path), c.split,
                                            revision=getattr(c, "revision", None)),
                     adapt, mirrorable=False)


def resolve(names: Sequence[str], custom: Sequence[CustomBenchmark] = (),
            base: str | Path | None = None,
            revisions: dict[str, str] | None = None) -> list[Benchmark]:
    """Benchmarks for the spec's names (groups expanded, order kept) plus custom ones, each
    pinned to ``revisions[name]`` (or its group's entry) when given."""
    revisions = revisions or {}
    out: list[Benchmark] = []
    for name in names:
        for member in GROUPS.get(name, (name,)):
            if member not in REGISTRY:
                known = ", ".join(sorted({*REGISTRY, *GROUPS}))
                raise ValueError(f"unknown benchmark {name!r}; built-in: {known}")
            if all(b.name != member for b in out):
                out.append(REGISTRY[member].pinned(revisions.get(member, revisions.get(name))))
    for c in custom:
        if any(b.name == c.name for b in out):
            raise ValueError(f"custom benchmark {c.name!r} clashes with another benchmark")
        out.append(custom_benchmark(c, base))
    return out
