"""pass@k: the unbiased estimator equals brute-force enumeration over all k-subsets."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polya_trainer.verify.passk import mean_pass_at_k, pass_at_k, usable_ks


def brute_force(n: int, c: int, k: int) -> float:
    """Share of k-subsets of n samples (the first c correct) that contain a correct one."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@st.composite
def cases(draw: st.DrawFn) -> tuple[int, int, int]:
    n = draw(st.integers(1, 12))
    return n, draw(st.integers(0, n)), draw(st.integers(1, n))


@settings(max_examples=200, deadline=None)
@given(cases())
def test_matches_enumeration_hypothesis(case: tuple[int, int, int]) -> None:
    n, c, k = case
    assert pass_at_k(n, c, k) == pytest.approx(brute_force(n, c, k), abs=1e-12)


def test_matches_enumeration_seeded_random() -> None:
    rng = random.Random(1234)
    for _ in range(300):
        n = rng.randint(1, 14)
        c, k = rng.randint(0, n), rng.randint(1, n)
        assert pass_at_k(n, c, k) == pytest.approx(brute_force(n, c, k), abs=1e-12), (n, c, k)


def test_matches_closed_form_for_large_n() -> None:
    # Too many subsets to enumerate: compare with exact binomials instead.
    for n, c, k in [(64, 3, 8), (200, 17, 64), (1024, 1, 1), (1024, 500, 512)]:
        exact = 1 - math.comb(n - c, k) / math.comb(n, k)
        assert pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-9)


def test_edge_cases() -> None:
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(10, 0, 10) == 0.0
    assert pass_at_k(10, 10, 1) == 1.0
    assert pass_at_k(10, 10, 10) == 1.0
    assert pass_at_k(10, 8, 3) == 1.0  # k > n - c: every subset has a correct sample
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)  # pass@1 is the plain success rate
    assert pass_at_k(1, 1, 1) == 1.0 and pass_at_k(1, 0, 1) == 0.0


@pytest.mark.parametrize("n,c,k", [(4, 5, 1), (4, -1, 1), (4, 2, 0), (4, 2, 5)])
def test_rejects_impossible_arguments(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_monotone_in_k_and_mean() -> None:
    values = [pass_at_k(16, 2, k) for k in range(1, 17)]
    assert values == sorted(values)
    assert mean_pass_at_k([(4, 0), (4, 4)], 1) == pytest.approx(0.5)
    assert mean_pass_at_k([], 4) == 0.0
    assert usable_ks([64, 1, 8, 8, 2], 8) == [1, 2, 8]
