"""The report's statistics: bootstrap intervals, paired tests and Holm's correction.

The bootstrap resamples questions (numpy, ``BOOTSTRAP`` resamples, fixed seed); an average
over benchmarks resamples each benchmark's questions separately (stratified) and averages the
benchmark means. A paired comparison resamples the per-question differences; its two-sided
p-value is twice the smaller share of resampled mean differences on either side of zero (at
most 1). ``holm`` adjusts a family of p-values for multiple comparisons.
"""

from __future__ import annotations

from typing import Any

BOOTSTRAP = 2000
SEED = 0
Z = (2.5, 97.5)  # percentiles of a 95% interval
ALPHA = 0.05  # the level at which a difference counts as detectable


def bootstrap_means(strata: list[Any], resamples: int = BOOTSTRAP, seed: int = 0) -> Any:
    """Resampled means of the average over strata of each stratum's mean (questions resampled
    with replacement within each stratum). `strata`: 1-d arrays of per-question values."""
    import numpy as np

    rng = np.random.default_rng(SEED + seed)
    total = np.zeros(resamples)
    for values in strata:
        idx = rng.integers(0, len(values), size=(resamples, len(values)))
        total += np.asarray(values, dtype=float)[idx].mean(axis=1)
    return total / len(strata)


def interval(strata: list[Any], seed: int = 0) -> tuple[float, float] | None:
    """95% percentile-bootstrap interval of the mean over strata of per-question values."""
    import numpy as np

    strata = [s for s in strata if len(s)]
    if not strata:
        return None
    lo, hi = np.percentile(bootstrap_means(strata, seed=seed), Z)
    return float(lo), float(hi)


def paired(diffs: list[Any], seed: int = 0) -> dict[str, Any] | None:
    """Paired comparison from per-question differences (one array per benchmark): mean
    difference, 95% paired-bootstrap interval and two-sided p-value."""
    import numpy as np

    diffs = [np.asarray(d, dtype=float) for d in diffs if len(d)]
    if not diffs:
        return None
    mean = float(np.mean([d.mean() for d in diffs]))
    boots = bootstrap_means(diffs, seed=seed)
    lo, hi = np.percentile(boots, Z)
    if all(not d.any() for d in diffs):
        p = 1.0
    else:
        p = min(1.0, 2 * min(float((boots <= 0).mean()), float((boots >= 0).mean())))
    return {"difference": mean, "ci": [float(lo), float(hi)], "p_value": p,
            "questions": int(sum(len(d) for d in diffs))}


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given. Sorted ascending, the i-th
    smallest of m becomes the largest of min(1, (m - j + 1) p_(j)) over j <= i (Holm 1979's
    step-down procedure): a hypothesis is rejected at level a when its adjusted p is <= a."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted = [0.0] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted
