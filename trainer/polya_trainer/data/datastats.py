"""What the generate stage produced: per-heuristic statistics, duplicates and diversity.

* Duplicates within a question (a question's accepted solutions, one per heuristic):
  *exact* when the whitespace-collapsed, lower-cased texts are equal; *near* when the Jaccard
  similarity of their word 5-gram sets is at least ``NEAR_DUP_JACCARD`` (0.8). The first
  solution in catalog order is kept. Duplicates are always counted; they are removed from the
  data only when ``spec.stages.generate.dedup`` is ``exact`` or ``near``.
* Diversity per question: the Vendi score (Friedman & Dieng 2023, "The Vendi Score: A
  Diversity Evaluation Metric for Machine Learning", TMLR), ``exp(H(eig(K / n)))`` with ``K``
  an n x n positive semi-definite similarity matrix with unit diagonal. It ranges from 1 (all
  solutions alike) to n (all orthogonal). With an embedding model (``spec.stages.generate.
  diversityEmbeddingModel``) ``K`` is the cosine similarity of mean-pooled hidden states;
  without one a lexical stand-in: cosine similarity of word 1- and 2-gram count vectors.
  Lexical Vendi is higher than embedding Vendi for paraphrases of one solution.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

NEAR_DUP_N = 5
NEAR_DUP_JACCARD = 0.8
LEXICAL_NGRAMS = (1, 2)
_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """Normalized word tokens: lower-cased alphanumeric runs (punctuation and LaTeX markup
    characters dropped)."""
    return _WORD.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> set[tuple[str, ...]]:
    """The set of word n-grams; a text shorter than n is one gram of all its tokens."""
    if len(tokens) < n:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def jaccard(a: set[Any], b: set[Any]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def _exact_key(text: str) -> str:
    return " ".join(text.lower().split())


def duplicates(texts: Sequence[str], n: int = NEAR_DUP_N,
               threshold: float = NEAR_DUP_JACCARD) -> list[str | None]:
    """For each text: None when kept, ``"exact"`` or ``"near"`` when it duplicates an earlier
    kept text."""
    kept: list[tuple[str, set[tuple[str, ...]]]] = []
    out: list[str | None] = []
    for t in texts:
        key, grams = _exact_key(t), ngrams(words(t), n)
        kind = None
        for k_key, k_grams in kept:
            if key == k_key:
                kind = "exact"
                break
            if jaccard(grams, k_grams) >= threshold:
                kind = "near"
        out.append(kind)
        if kind is None:
            kept.append((key, grams))
    return out


def vendi_from_similarity(k: np.ndarray) -> float:
    """exp of the Shannon entropy of the eigenvalues of K/n (K: PSD, unit diagonal)."""
    n = k.shape[0]
    if n == 0:
        return 0.0
    eig = np.clip(np.linalg.eigvalsh(np.asarray(k, dtype=np.float64) / n), 0.0, None)
    eig = eig[eig > 1e-12]
    eig = eig / eig.sum()
    return float(math.exp(-float(np.sum(eig * np.log(eig)))))


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    """Cosine similarity of the rows; an all-zero row is similar only to itself."""
    v = np.asarray(vectors, dtype=np.float64)
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    v = np.divide(v, norm, out=np.zeros_like(v), where=norm > 0)
    k = v @ v.T
    np.fill_diagonal(k, 1.0)
    return k


def lexical_similarity(texts: Sequence[str], ns: Sequence[int] = LEXICAL_NGRAMS) -> np.ndarray:
    """Cosine similarity of word n-gram count vectors (n in `ns`). Only grams that occur in
    two or more texts enter the products (the others only add to the norms), which keeps the
    matrices small."""
    counts = []
    for t in texts:
        toks = words(t)
        c: Counter[tuple[str, ...]] = Counter()
        for n in ns:
            c.update(tuple(toks[i:i + n]) for i in range(len(toks) - n + 1))
        counts.append(c)
    norms = np.array([math.sqrt(sum(v * v for v in c.values())) for c in counts])
    df: Counter[tuple[str, ...]] = Counter(g for c in counts for g in c)
    shared = {g: i for i, g in enumerate(g for g, d in df.items() if d > 1)}
    m = np.zeros((len(texts), max(len(shared), 1)))
    for row, c in enumerate(counts):
        for g, v in c.items():
            if g in shared:
                m[row, shared[g]] = v
    denom = np.outer(norms, norms)
    k = np.divide(m @ m.T, denom, out=np.zeros((len(texts), len(texts))), where=denom > 0)
    np.fill_diagonal(k, 1.0)
    return k


Embedder = Callable[[Sequence[str]], np.ndarray]


def vendi(texts: Sequence[str], embed: Embedder | None = None) -> float:
    """Vendi score of `texts`: embedding cosine when `embed` is given, else lexical."""
    if not texts:
        return 0.0
    k = cosine_matrix(embed(texts)) if embed is not None else lexical_similarity(texts)
    return vendi_from_similarity(k)


def hf_embedder(model_name: str, batch_size: int = 16, max_length: int = 512) -> Embedder:
    """Mean-pooled last hidden states of a Hugging Face encoder (CPU or the first GPU)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_name)
    model = AutoModel.from_pretrained(model_name).eval()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)

    def embed(texts: Sequence[str]) -> np.ndarray:
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), batch_size):
                enc = tok(list(texts[i:i + batch_size]), padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt").to(device)
                hidden = model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                out.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).float().cpu())
        return torch.cat(out).numpy()

    return embed


def distribution(values: Sequence[float]) -> dict[str, float | int | None]:
    """count, mean, std and quantiles (p10, p25, p50, p75, p90) with min and max."""
    if not values:
        return {"count": 0, "mean": None, "std": None, "min": None, "p10": None, "p25": None,
                "p50": None, "p75": None, "p90": None, "max": None}
    a = np.asarray(values, dtype=np.float64)
    q = np.quantile(a, [0.1, 0.25, 0.5, 0.75, 0.9])
    r = lambda x: round(float(x), 4)  # noqa: E731
    return {"count": int(a.size), "mean": r(a.mean()), "std": r(a.std()), "min": r(a.min()),
            "p10": r(q[0]), "p25": r(q[1]), "p50": r(q[2]), "p75": r(q[3]), "p90": r(q[4]),
            "max": r(a.max())}


def dedupe_rows(rows: list[dict[str, Any]], mode: str = "off", n: int = NEAR_DUP_N,
                threshold: float = NEAR_DUP_JACCARD,
                ) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]]]:
    """Find duplicate completions within each question (rows in catalog order); drop them
    when `mode` is ``exact`` (exact ones) or ``near`` (both). Returns (rows kept,
    {heuristic: {"exact": found, "near": found, "removed": removed}})."""
    by_q: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_q.setdefault(r["question_id"], []).append(i)
    kinds: list[str | None] = [None] * len(rows)
    for idx in by_q.values():
        for i, kind in zip(idx, duplicates([rows[i]["completion"] for i in idx], n, threshold),
                           strict=True):
            kinds[i] = kind
    per_h: dict[str, dict[str, int]] = {}
    kept = []
    for r, kind in zip(rows, kinds, strict=True):
        h = per_h.setdefault(r["heuristic"], {"exact": 0, "near": 0, "removed": 0})
        drop = kind is not None and (mode == "near" or (mode == "exact" and kind == "exact"))
        if kind is not None:
            h[kind] += 1
        h["removed"] += drop
        if not drop:
            kept.append(r)
    return kept, per_h


def data_stats(rows: Sequence[dict[str, Any]], per_heuristic: dict[str, dict[str, Any]],
               embed: Embedder | None = None, embedding_model: str | None = None,
               ) -> tuple[dict[str, Any], dict[str, float]]:
    """(card section, per-question Vendi) from the kept rows and the merged shard counters.

    `per_heuristic` holds per heuristic: pairs, accepted, candidates, truncated, extraction
    (method -> count) and duplicates ({exact, near, removed}) summed over shards.
    """
    scores: dict[str, list[float]] = {}
    lengths: dict[str, list[float]] = {}
    by_q: dict[str, list[str]] = {}
    for r in rows:
        scores.setdefault(r["heuristic"], []).append(float(r["score"]))
        lengths.setdefault(r["heuristic"], []).append(float(r["num_tokens"]))
        by_q.setdefault(str(r["question_id"]), []).append(str(r["completion"]))
    table: dict[str, Any] = {}
    for hid, c in per_heuristic.items():
        cand = int(c.get("candidates", 0))
        dup = c.get("duplicates", {})
        table[hid] = {
            "pairs": int(c.get("pairs", 0)), "accepted": int(c.get("accepted", 0)),
            "kept": len(scores.get(hid, [])),
            "acceptance_rate": _ratio(c.get("accepted", 0), c.get("pairs", 0)),
            "candidates": cand, "truncated": int(c.get("truncated", 0)),
            "truncation_rate": _ratio(c.get("truncated", 0), cand),
            "answer_extraction": dict(c.get("extraction", {})),
            "duplicates_exact": int(dup.get("exact", 0)),
            "duplicates_near": int(dup.get("near", 0)),
            "duplicates_removed": int(dup.get("removed", 0)),
            "score": distribution(scores.get(hid, [])),
            "length_tokens": distribution(lengths.get(hid, [])),
        }
    per_question = {q: round(vendi(texts, embed), 4) for q, texts in by_q.items()}
    multi = [v for q, v in per_question.items() if len(by_q[q]) > 1]
    dups = [t for t in table.values()]
    section = {
        "per_heuristic": table,
        "duplicates": {"exact": sum(t["duplicates_exact"] for t in dups),
                       "near": sum(t["duplicates_near"] for t in dups),
                       "removed": sum(t["duplicates_removed"] for t in dups),
                       "near_jaccard": NEAR_DUP_JACCARD, "near_ngram": NEAR_DUP_N},
        "diversity": {
            "measure": "vendi",
            "similarity": (f"embedding-cosine:{embedding_model}" if embed is not None
                           else "lexical: cosine of word 1-2-gram counts"),
            "questions": len(per_question), "questions_with_several_solutions": len(multi),
            "per_question": distribution(multi),
            "max_possible": max((len(v) for v in by_q.values()), default=0),
        },
    }
    return section, per_question


def _ratio(a: float, b: float) -> float:
    return round(float(a) / float(b), 6) if b else 0.0


def merge_heuristic_counters(sides: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Sum the per-heuristic counters of shard sidecars (older sidecars lack some keys)."""
    out: dict[str, dict[str, Any]] = {}
    for s in sides:
        for hid, v in s.get("per_heuristic", {}).items():
            acc = out.setdefault(hid, {"pairs": 0, "accepted": 0, "candidates": 0,
                                       "truncated": 0, "extraction": {},
                                       "duplicates": {"exact": 0, "near": 0, "removed": 0}})
            for key in ("pairs", "accepted", "candidates", "truncated"):
                acc[key] += int(v.get(key, 0))
            for m, n in v.get("extraction", {}).items():
                acc["extraction"][m] = acc["extraction"].get(m, 0) + int(n)
            for k2, n in v.get("duplicates", {}).items():
                acc["duplicates"][k2] = acc["duplicates"].get(k2, 0) + int(n)
    return out
