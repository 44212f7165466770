"""Contamination check: word n-gram overlap of training inputs with the evaluation benchmarks.

An item (a seed question, an RL question, a few-shot exemplar's question + solution)
*overlaps* a benchmark when they share at least one word n-gram (``spec.contamination.ngram``,
13 by default, as in GPT-3's and Llama 2's contamination analyses) of normalized word tokens
(``datastats.words``: lower-cased alphanumeric runs). N-grams of the benchmarks' own prompt
templates (the boxed-answer request, the code and multiple-choice instructions) are ignored,
so only the questions themselves count.

Where it runs (``spec.contamination.action`` ``report`` or ``drop``; ``off`` skips it):

* generate, before any sampling: the seed questions and the selected heuristics' exemplars
  (``<arm>/generate/contamination.json``, summary in the card and stage status);
* rl, before the trainer is built: the RL questions (``<arm>/rl/contamination.json``).

With ``drop`` overlapping seed/RL questions are removed and overlapping exemplars left out of
the prompts; the report lists what was dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from polya_trainer.data.datastats import ngrams, words
from polya_trainer.runtime.artifacts import atomic_write_json

Gram = tuple[str, ...]
Texts = dict[str, list[tuple[str, str]]]
EXAMPLES = 20  # overlapping item ids listed per (source, benchmark)


def _template_grams(n: int) -> set[Gram]:
    from polya_trainer.data import benchmarks as bm

    texts = [m["content"] for m in (*bm.math_messages(""), *bm.code_messages(""),
                                    *bm.choice_messages("", "", []))]
    return {g for t in texts for g in ngrams(words(t), n) if len(g) == n}


def benchmark_texts(spec: Any, workdir: str | Path | None = None) -> Texts:
    """{benchmark: [(item id, prompt text)]} for every evaluation benchmark of the spec (the
    items evaluation uses: ``evaluate.limit`` applies)."""
    from polya_trainer.data import benchmarks as bm

    ev = spec.stages.evaluate
    out: Texts = {}
    for b in bm.resolve(ev.benchmarks, ev.custom, base=workdir, revisions=ev.revisions):
        out[b.name] = [(it.id, "\n".join(m["content"] for m in it.messages
                                         if m["role"] == "user")) for it in b.load(ev.limit)]
    return out


class Index:
    """Word n-grams of the benchmarks -> the benchmarks holding them."""

    def __init__(self, benches: dict[str, Sequence[tuple[str, str]]], n: int = 13) -> None:
        self.n = n
        skip = _template_grams(n)
        self.grams: dict[Gram, set[str]] = {}
        self.sizes = {name: len(items) for name, items in benches.items()}
        for name, items in benches.items():
            for _, text in items:
                for g in ngrams(words(text), n):
                    if len(g) == n and g not in skip:
                        self.grams.setdefault(g, set()).add(name)

    def hits(self, text: str) -> dict[str, int]:
        """{benchmark: shared n-grams} for one text."""
        out: dict[str, int] = {}
        for g in ngrams(words(text), self.n):
            for name in self.grams.get(g, ()):
                out[name] = out.get(name, 0) + 1
        return out


def scan(items: Iterable[tuple[str, str]], index: Index) -> dict[str, Any]:
    """Overlap of (id, text) items with each benchmark: counts, rates, example ids."""
    items = list(items)
    per_bench: dict[str, dict[str, Any]] = {
        b: {"items": 0, "rate": 0.0, "examples": []} for b in index.sizes}
    flagged: list[str] = []
    for item_id, text in items:
        hits = index.hits(text)
        if hits:
            flagged.append(item_id)
        for b in hits:
            e = per_bench[b]
            e["items"] += 1
            if len(e["examples"]) < EXAMPLES:
                e["examples"].append({"id": item_id, "shared_ngrams": hits[b]})
    for e in per_bench.values():
        e["rate"] = round(e["items"] / len(items), 6) if items else 0.0
    return {"checked": len(items), "overlapping": len(flagged),
            "rate": round(len(flagged) / len(items), 6) if items else 0.0,
            "per_benchmark": per_bench, "overlapping_ids": flagged}


def check(sources: dict[str, Sequence[tuple[str, str]]],
          benches: dict[str, Sequence[tuple[str, str]]], n: int = 13,
          action: str = "report") -> dict[str, Any]:
    """The report for several sources ({name: [(id, text)]}) against the benchmarks."""
    index = Index(benches, n)
    return {"ngram": n, "action": action, "tokens": "lower-cased alphanumeric words",
            "benchmarks": index.sizes,
            "sources": {name: scan(items, index) for name, items in sources.items()}}


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The short form for the card and the stage status."""
    return {"ngram": report["ngram"], "action": report["action"],
            "benchmarks": sorted(report["benchmarks"]),
            **{name: {"checked": s["checked"], "overlapping": s["overlapping"],
                      "dropped": s["overlapping"] if report["action"] == "drop" else 0}
               for name, s in report["sources"].items()}}


def write(report: dict[str, Any], path: Path) -> None:
    atomic_write_json(path, report)


def exemplar_items(heuristics: Sequence[Any], n_exemplars: int) -> list[tuple[str, str]]:
    """(heuristic/index, question + solution) for the exemplars the prompts use."""
    return [(f"{h.id}/{i}", f"{e.question}\n{e.solution}")
            for h in heuristics if h is not None
            for i, e in enumerate(h.exemplars[:max(n_exemplars, 0)])]


def without_exemplars(heuristics: Sequence[Any], dropped: Iterable[str],
                      n_exemplars: int) -> list[Any]:
    """The heuristics keeping only their first `n_exemplars` exemplars (those checked) less
    the dropped ones (ids "heuristic/index"), so an unchecked exemplar never moves up."""
    from dataclasses import replace

    gone = set(dropped)
    return [h if h is None else replace(h, exemplars=tuple(
        e for i, e in enumerate(h.exemplars[:max(n_exemplars, 0)]) if f"{h.id}/{i}" not in gone))
        for h in heuristics]


def gate_questions(spec: Any, what: str, questions: list[dict[str, str]], out: Path,
                   workdir: str | Path, heuristics: Sequence[Any] = (),
                   n_exemplars: int = 0,
                   ) -> tuple[list[dict[str, str]], list[Any], dict[str, Any] | None]:
    """Run the spec's check on `questions` (and exemplars); returns (questions kept,
    heuristics kept, summary or None when off). Writes ``out/contamination.json``."""
    c = spec.contamination
    if c.action == "off":
        (out / "contamination.json").unlink(missing_ok=True)  # a stale report of an earlier try
        return questions, list(heuristics), None
    sources = {what: [(q["id"], q["question"]) for q in questions]}
    ex = exemplar_items(heuristics, n_exemplars)
    if ex:
        sources["exemplars"] = ex
    report = check(sources, benchmark_texts(spec, workdir), c.ngram, c.action)
    write(report, out / "contamination.json")
    if c.action == "drop":
        bad = set(report["sources"][what]["overlapping_ids"])
        questions = [q for q in questions if q["id"] not in bad]
        if ex:
            heuristics = without_exemplars(
                heuristics, report["sources"]["exemplars"]["overlapping_ids"], n_exemplars)
    return questions, list(heuristics), summary(report)
