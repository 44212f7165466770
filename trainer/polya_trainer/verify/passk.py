"""The unbiased pass@k estimator of Chen et al. (2021), "Evaluating Large Language Models
Trained on Code", and its mean over questions.

For one question with ``n`` samples of which ``c`` are correct, the probability that a random
``k``-subset (without replacement) holds at least one correct sample is

    pass@k = 1 - C(n - c, k) / C(n, k) = 1 - prod_{i = n - c + 1}^{n} (1 - k / i)

The product form avoids huge binomials and stays exact to float precision.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """pass@k for one question: `n` samples, `c` correct, subsets of size `k` (1 <= k <= n)."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got c={c}, n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    if c == 0:
        return 0.0
    if n - c < k:  # every k-subset must contain a correct sample
        return 1.0
    miss = 1.0
    for i in range(n - c + 1, n + 1):
        miss *= 1.0 - k / i
    return 1.0 - miss


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float:
    """Mean pass@k over questions given (n, c) pairs; 0.0 for no questions."""
    if not counts:
        return 0.0
    return sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)


def usable_ks(ks: Iterable[int], samples: int) -> list[int]:
    """The requested k values that the number of samples supports, sorted and unique."""
    return sorted({k for k in ks if 1 <= k <= samples})
