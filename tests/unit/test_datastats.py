"""datastats: duplicates within a question, the Vendi score and per-heuristic figures."""

from __future__ import annotations

import math

import numpy as np
import pytest
from polya_trainer.data import datastats as ds

LONG = " ".join(f"step{i} adds {i} apples to the basket" for i in range(12))


def test_words_and_ngrams() -> None:
    assert ds.words("Ava has 3 Apples, \\boxed{7}.") == ["ava", "has", "3", "apples", "boxed", "7"]
    assert ds.ngrams(["a", "b", "c"], 2) == {("a", "b"), ("b", "c")}
    assert ds.ngrams(["a", "b"], 5) == {("a", "b")}  # shorter than n: one gram
    assert ds.jaccard({1, 2}, {2, 3}) == pytest.approx(1 / 3)


def test_duplicates_exact_near_and_distinct() -> None:
    near = LONG.rsplit(" ", 1)[0] + " crate"  # last word changed: 5-gram Jaccard ~0.97
    assert ds.jaccard(ds.ngrams(ds.words(LONG), 5), ds.ngrams(ds.words(near), 5)) >= 0.8
    other = "Work backwards from the total of 7 to find the start."
    kinds = ds.duplicates([LONG, "  " + LONG.upper() + "\n", near, other])
    assert kinds == [None, "exact", "near", None]
    # Below the threshold it is kept.
    assert ds.duplicates([LONG, near], threshold=0.999) == [None, None]


def test_vendi_known_values() -> None:
    assert ds.vendi_from_similarity(np.ones((4, 4))) == pytest.approx(1.0)
    assert ds.vendi_from_similarity(np.eye(4)) == pytest.approx(4.0)
    # Two items with similarity s: eigenvalues of K/2 are (1 +- s)/2.
    k = np.array([[1.0, 0.5], [0.5, 1.0]])
    p = np.array([0.75, 0.25])
    assert ds.vendi_from_similarity(k) == pytest.approx(math.exp(-(p * np.log(p)).sum()))


def test_vendi_lexical_and_embedding() -> None:
    assert ds.vendi([LONG, LONG, LONG]) == pytest.approx(1.0)
    assert ds.vendi(["alpha beta", "gamma delta", "epsilon zeta"]) == pytest.approx(3.0)
    mixed = ds.vendi([LONG, LONG, "gamma delta"])
    assert 1.0 < mixed < 3.0
    # An embedder replaces the lexical vectors: these "embeddings" make all texts alike.
    same = ds.vendi(["alpha beta", "gamma delta"], embed=lambda t: np.ones((len(t), 3)))
    assert same == pytest.approx(1.0)


def rows() -> list[dict]:
    return [
        {"question_id": "q1", "heuristic": "a", "completion": LONG, "score": 1.0,
         "num_tokens": 10},
        {"question_id": "q1", "heuristic": "b", "completion": LONG.upper(), "score": 3.0,
         "num_tokens": 30},
        {"question_id": "q2", "heuristic": "a", "completion": "one two three", "score": 2.0,
         "num_tokens": 20},
        {"question_id": "q2", "heuristic": "b", "completion": "four five six", "score": 4.0,
         "num_tokens": 40},
    ]


@pytest.mark.parametrize(("mode", "kept"), [("off", 4), ("exact", 3), ("near", 3)])
def test_dedupe_rows_counts_always_removes_by_mode(mode: str, kept: int) -> None:
    out, per_h = ds.dedupe_rows(rows(), mode)
    assert len(out) == kept
    assert per_h["b"]["exact"] == 1 and per_h["a"] == {"exact": 0, "near": 0, "removed": 0}
    assert per_h["b"]["removed"] == (0 if mode == "off" else 1)


def test_data_stats_per_heuristic_and_diversity() -> None:
    counters = ds.merge_heuristic_counters([
        {"per_heuristic": {"a": {"pairs": 2, "accepted": 2, "candidates": 8, "truncated": 1,
                                 "extraction": {"boxed": 6, "none": 2},
                                 "duplicates": {"exact": 0, "near": 0, "removed": 0}},
                           "b": {"pairs": 2, "accepted": 2, "candidates": 8, "truncated": 4,
                                 "extraction": {"boxed": 4, "none": 4},
                                 "duplicates": {"exact": 1, "near": 0, "removed": 1}}}},
        {"per_heuristic": {"a": {"pairs": 2, "accepted": 0}}},  # an older sidecar
    ])
    kept, _ = ds.dedupe_rows(rows(), "exact")
    section, per_q = ds.data_stats(kept, counters)
    a, b = section["per_heuristic"]["a"], section["per_heuristic"]["b"]
    assert a["acceptance_rate"] == 0.5 and a["pairs"] == 4 and b["acceptance_rate"] == 1.0
    assert a["truncation_rate"] == 0.125 and b["truncation_rate"] == 0.5
    assert b["answer_extraction"] == {"boxed": 4, "none": 4}
    assert a["score"]["count"] == 2 and a["score"]["mean"] == 1.5
    assert b["length_tokens"]["max"] == 40 and b["kept"] == 1
    assert section["duplicates"]["exact"] == 1 and section["duplicates"]["removed"] == 1
    assert per_q["q1"] == pytest.approx(1.0)  # one solution left
    assert per_q["q2"] == pytest.approx(2.0)  # disjoint words
    div = section["diversity"]
    assert div["questions_with_several_solutions"] == 1 and div["per_question"]["mean"] == 2.0
    assert div["similarity"].startswith("lexical")


def test_hf_embedder_on_tiny_model(tiny_model_dir) -> None:
    """The embedding path: mean-pooled hidden states of a real (tiny) transformers model."""
    embed = ds.hf_embedder(str(tiny_model_dir), batch_size=2)
    texts = ["Ava has 3 apples.", "Ava has 3 apples.", "Work backwards from the total."]
    vectors = embed(texts)
    assert vectors.shape[0] == 3 and vectors.shape[1] > 1
    assert np.allclose(vectors[0], vectors[1], atol=1e-5)
    # Padding does not leak in: a short text batched with a longer one embeds as alone.
    together = embed([texts[0], texts[2] * 3])[0]
    assert np.allclose(together, embed([texts[0]])[0], atol=1e-4)
    score = ds.vendi(texts, embed=embed)
    assert 1.0 <= score < 2.0 + 1e-6  # two of the three are the same text
    assert ds.vendi(texts[:2], embed=embed) == pytest.approx(1.0, abs=1e-4)


def test_report_data_table_has_per_heuristic_insight() -> None:
    """The report's training-data table carries the data_insight columns (report.py)."""
    from polya_trainer.report.text import card_table as _card_table

    kept, _ = ds.dedupe_rows(rows(), "exact")
    counters = ds.merge_heuristic_counters([{"per_heuristic": {
        h: {"pairs": 2, "accepted": 2, "candidates": 4, "truncated": 1,
            "duplicates": {"exact": int(h == "b"), "near": 0, "removed": int(h == "b")}}
        for h in ("a", "b")}}])
    insight, _ = ds.data_stats(kept, counters)
    card = {"counts": {"pairs": 4, "accepted": 4}, "acceptance_rate": 1.0,
            "truncation_rate": 0.25, "data_insight": insight,
            "acceptance_rate_per_heuristic": {h: {"pairs": 2, "accepted": 2, "rate": 1.0}
                                              for h in ("a", "b")}}
    header, body = _card_table(card)
    assert header[-1] == "Vendi mean/question" and len(header) == 10
    assert all(len(r) == len(header) for r in body)
    a, b, total = body
    assert a[4] == "2" and b[4] == "1" and b[6] == "1/0" and a[5] == "25.00"
    assert total[0] == "all" and total[4] == "3" and total[-1] == "2.00"
    # A card without data_insight keeps the old four columns.
    assert len(_card_table({k: v for k, v in card.items() if k != "data_insight"})[0]) == 4


def test_lexical_similarity_equals_full_count_cosine() -> None:
    """Leaving grams seen in one text out of the products gives the full cosine."""
    from collections import Counter

    texts = [LONG, "alpha beta alpha gamma", "alpha beta delta", "", "gamma delta epsilon"]
    grams = [Counter(ds.words(t)) + Counter(zip(ds.words(t), ds.words(t)[1:], strict=False))
             for t in texts]
    vocab = sorted({g for c in grams for g in c}, key=str)
    full = np.array([[c.get(g, 0) for g in vocab] for c in grams], dtype=float)
    assert np.allclose(ds.lexical_similarity(texts), ds.cosine_matrix(full))
