"""The report's numbers: evaluate outputs read, tabulated, averaged, compared.

``build_table`` returns everything the renderings show (see the package docstring for the
keys); ``sweep_table`` does the same for a sweep's variants. Nothing here draws or formats.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from polya_trainer.report.stats import ALPHA, BOOTSTRAP, SEED, holm, interval, paired
from polya_trainer.spec import ARMS

CHECKPOINTS = ("base", "midtrain", "rl")
REFERENCE = ("vanilla", "rl")  # the paper's baseline: vanilla RL
HEADLINE_K = 64
# The comparisons fixed before any result (row, versus); the report opens with those present.
PREREGISTERED = (("vanilla/rl", "vanilla/base"), ("polya/rl", "vanilla/rl"),
                 ("star/rl", "vanilla/rl"))


def k_of(metric: str) -> int:
    return int(metric.removeprefix("pass@"))


def kind_of(bench: str, figures: dict[str, Any]) -> str:
    """A benchmark's kind: recorded with its figures, else the registry's (math if unknown)."""
    if figures.get("kind"):
        return str(figures["kind"])
    from polya_trainer.data import benchmarks as bm

    entry = bm.REGISTRY.get(bench)
    return entry.kind if entry is not None else "math"


def load_results(workdir: Path) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """{arm: {checkpoint: {benchmark: figures}}} for every arm with results, in arm order."""
    found: dict[str, Any] = {}
    for path in sorted(Path(workdir).glob("*/evaluate/results.json")):
        try:
            found[path.parent.parent.name] = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
    order = [a for a in ARMS if a in found] + sorted(a for a in found if a not in ARMS)
    return {a: found[a] for a in order}


def load_questions(workdir: Path, results: dict[str, Any]
                   ) -> dict[str, dict[str, dict[str, dict[str, dict[str, float]]]]]:
    """{bench: {arm: {ckpt: {question id: {metric: value}}}}} from the per-question rows."""
    out: dict[str, Any] = {}
    for arm, ckpts in results.items():
        for ckpt, benches in ckpts.items():
            for bench in benches:
                path = Path(workdir) / arm / "evaluate" / "questions" / ckpt / f"{bench}.jsonl"
                if not path.is_file():
                    continue
                rows: dict[str, dict[str, float]] = {}
                for line in path.read_text().splitlines():
                    if not line.strip():
                        continue
                    r = json.loads(line)
                    vals = {m: float(v) for m, v in r.items() if m.startswith("pass@")}
                    if "greedy_correct" in r:
                        vals["greedy"] = float(bool(r["greedy_correct"]))
                    rows[str(r["id"])] = vals
                out.setdefault(bench, {}).setdefault(arm, {})[ckpt] = rows
    return out


def load_cards(workdir: Path) -> dict[str, dict[str, Any]]:
    """Each arm's generate data card (per-heuristic acceptance, truncation), if present."""
    cards = {}
    for path in sorted(Path(workdir).glob("*/generate/card.json")):
        try:
            cards[path.parent.parent.name] = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
    return cards


def build_table(results: dict[str, Any],
                questions: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report's data (see the package docstring); `questions` adds intervals and pairs."""
    questions = questions or {}
    benchmarks: list[str] = []
    kinds: dict[str, str] = {}
    metric_set: set[str] = set()
    rows: list[tuple[str, str]] = []
    table: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    counts: dict[str, dict[str, dict[str, int]]] = {}
    settings: dict[str, dict[str, Any]] = {}
    truncation: dict[str, dict[str, float]] = {}
    for arm, ckpts in results.items():
        for ckpt in sorted(ckpts, key=lambda c: (*CHECKPOINTS, c).index(c)):
            rows.append((arm, ckpt))
            for bench, figures in ckpts[ckpt].items():
                if bench not in benchmarks:
                    benchmarks.append(bench)
                    kinds[bench] = kind_of(bench, figures)
                values = {m: float(v) for m, v in figures.items()
                          if m.startswith("pass@") or m == "greedy"}
                metric_set.update(values)
                table.setdefault(bench, {}).setdefault(arm, {})[ckpt] = values
                counts.setdefault(bench, {}).setdefault(arm, {})[ckpt] = int(figures.get("n", 0))
                if figures.get("settings"):
                    settings.setdefault(bench, {})[f"{arm}/{ckpt}"] = figures["settings"]
                if figures.get("truncated") is not None:
                    truncation.setdefault(bench, {})[f"{arm}/{ckpt}"] = float(
                        figures["truncated"])
    metrics = sorted((m for m in metric_set if m.startswith("pass@")), key=k_of)
    if "greedy" in metric_set:
        metrics.append("greedy")
    pass_ks = [k_of(m) for m in metrics if m.startswith("pass@")]
    head_k = HEADLINE_K if HEADLINE_K in pass_ks else (max(pass_ks) if pass_ks else None)
    head_metric = f"pass@{head_k}" if head_k else None
    math = [b for b in benchmarks if kinds[b] == "math"]
    apart = [b for b in benchmarks if kinds[b] != "math"]

    def cell(bench: str, arm: str, ckpt: str, metric: str) -> float | None:
        return table.get(bench, {}).get(arm, {}).get(ckpt, {}).get(metric)

    def per_q(bench: str, arm: str, ckpt: str, metric: str) -> dict[str, float]:
        rows_ = questions.get(bench, {}).get(arm, {}).get(ckpt, {})
        return {q: v[metric] for q, v in rows_.items() if metric in v}

    # Intervals of every cell.
    ci: dict[str, Any] = {}
    for bi, bench in enumerate(benchmarks):
        for arm, ckpt in rows:
            for metric in metrics:
                vals = list(per_q(bench, arm, ckpt, metric).values())
                if vals:
                    ci.setdefault(bench, {}).setdefault(arm, {}).setdefault(ckpt, {})[metric] = \
                        interval([vals], seed=bi)

    average: dict[str, dict[str, dict[str, float]]] = {}
    for arm, ckpt in rows:
        for metric in metrics:
            present = [v for b in benchmarks if (v := cell(b, arm, ckpt, metric)) is not None]
            if present:
                average.setdefault(arm, {}).setdefault(ckpt, {})[metric] = (
                    sum(present) / len(present))

    # Headline: math benchmarks only, at pass@K (and every pass@k for the curve).
    headline: dict[str, Any] = {"metric": head_metric, "benchmarks": math, "rows": {}}
    for arm, ckpt in rows:
        row: dict[str, Any] = {}
        have = [b for b in math if cell(b, arm, ckpt, "pass@1") is not None
                or (head_metric and cell(b, arm, ckpt, head_metric) is not None)]
        if not have:
            continue
        for metric in [m for m in metrics if m.startswith("pass@")]:
            vals = [cell(b, arm, ckpt, metric) for b in have]
            if any(v is None for v in vals):
                continue
            strata = [list(per_q(b, arm, ckpt, metric).values()) for b in have]
            row[metric] = {"value": sum(vals) / len(vals),  # type: ignore[arg-type]
                           "ci": interval(strata) if all(strata) else None}
        row["benchmarks"] = have
        row["partial"] = len(have) < len(math)
        row["questions"] = sum(counts[b][arm][ckpt] for b in have)
        headline["rows"][f"{arm}/{ckpt}"] = row

    deltas: dict[str, dict[str, dict[str, float]]] = {}
    ref_arm, ref_ckpt = REFERENCE
    if (ref_arm, ref_ckpt) in rows:
        for arm, ckpt in rows:
            if (arm, ckpt) == REFERENCE:
                continue
            for bench in [*benchmarks, "average"]:
                for metric in metrics:
                    if bench == "average":
                        mine = average.get(arm, {}).get(ckpt, {}).get(metric)
                        ref = average.get(ref_arm, {}).get(ref_ckpt, {}).get(metric)
                    else:
                        mine, ref = cell(bench, arm, ckpt, metric), cell(bench, *REFERENCE,
                                                                          metric)
                    if mine is not None and ref is not None:
                        deltas.setdefault(f"{arm}/{ckpt}", {}).setdefault(bench, {})[metric] = (
                            mine - ref)

    paired_out = _compare(rows, benchmarks, math, metrics, head_metric, per_q)
    tests = _correct(paired_out)

    # Every arm starts from the same base model: show identical base rows once.
    shown: list[str] = []
    base_seen: list[dict[str, Any]] = []
    for arm, ckpt in rows:
        if ckpt == "base":
            mine = {b: table.get(b, {}).get(arm, {}).get("base") for b in benchmarks}
            if mine in base_seen:
                continue
            base_seen.append(mine)
        shown.append(f"{arm}/{ckpt}")
    return {"arms": list(results), "rows": [f"{a}/{c}" for a, c in rows], "display_rows": shown,
            "benchmarks": benchmarks, "kinds": kinds, "math_benchmarks": math,
            "apart_benchmarks": apart, "metrics": metrics, "table": table, "ci": ci,
            "questions": counts, "average": average, "headline": headline,
            "apart_metrics": [m for m in ("pass@1", "greedy") if m in metrics],
            "paired": paired_out, "settings": settings, "truncation": truncation,
            "reference": "/".join(REFERENCE) if deltas else None, "deltas": deltas,
            "bootstrap": {"resamples": BOOTSTRAP, "seed": SEED, "level": 0.95,
                          "method": "percentile, questions resampled (stratified by "
                                    "benchmark for averages)"},
            "multiple_comparisons": {"method": "holm", "tests": tests, "alpha": ALPHA,
                                     "family": "every paired comparison in this report"},
            "preregistered": [f"{a} vs {b}" for a, b in PREREGISTERED]}


def _compare(rows: list[tuple[str, str]], benchmarks: list[str], math: list[str],
             metrics: list[str], head_metric: str | None,
             per_q: Callable[[str, str, str, str], dict[str, float]]) -> list[dict[str, Any]]:
    """Paired comparisons: every trained row against its arm's base and against vanilla/rl,
    per benchmark at pass@1, the headline metric and greedy, and on the math average."""
    pairs: list[tuple[str, str]] = []
    for arm, ckpt in rows:
        if ckpt != "base" and (arm, "base") in rows:
            pairs.append((f"{arm}/{ckpt}", f"{arm}/base"))
        if (arm, ckpt) != REFERENCE and REFERENCE in rows and ckpt != "base":
            pairs.append((f"{arm}/{ckpt}", "/".join(REFERENCE)))
    compare_metrics = sorted({m for m in ("pass@1", head_metric, "greedy") if m in metrics},
                             key=metrics.index)
    paired_out: list[dict[str, Any]] = []
    for a, b in pairs:
        (aa, ac), (ba, bc) = a.split("/"), b.split("/")
        entry: dict[str, Any] = {"row": a, "versus": b, "preregistered": (a, b) in PREREGISTERED,
                                 "benchmarks": {}, "headline": None}
        for metric in compare_metrics:
            diffs_math = []
            for bi, bench in enumerate(benchmarks):
                qa, qb = per_q(bench, aa, ac, metric), per_q(bench, ba, bc, metric)
                common = sorted(set(qa) & set(qb))
                if not common:
                    continue
                d = [qa[q] - qb[q] for q in common]
                entry["benchmarks"].setdefault(bench, {})[metric] = paired([d], seed=bi)
                if bench in math:
                    diffs_math.append(d)
            if metric == head_metric or (metric == "pass@1" and head_metric is None):
                entry["headline"] = paired(diffs_math) if diffs_math else None
        paired_out.append(entry)
    return paired_out


def _correct(entries: list[dict[str, Any]]) -> int:
    """Add ``p_holm`` to every paired result: Holm's correction over all of them together
    (math averages and single benchmarks, every metric). Returns how many tests that is."""
    found = [e["headline"] for e in entries if e["headline"]]
    found += [r for e in entries for per in e["benchmarks"].values() for r in per.values() if r]
    for result, adjusted in zip(found, holm([r["p_value"] for r in found]), strict=True):
        result["p_holm"] = adjusted
    return len(found)


# --------------------------------------------------------------------------- sweeps
# A sweep (``spec.sweep``) runs one variant per (heuristics count n, seed) under
# ``<sweep>/<variant>/`` with a ``variant.json`` naming n and the seed. The sweep report reads
# each variant's results and shows, per n, the mean and the standard deviation across seeds
# of the math average (the headline's benchmarks) at every pass@k, and the ablation curve.

SWEEP_ROWS = (("polya", "rl"), ("polya", "midtrain"), ("vanilla", "rl"))


def _math_average(figures: dict[str, dict[str, Any]], metric: str) -> float | None:
    values = [f[metric] for b, f in figures.items()
              if kind_of(b, f) == "math" and isinstance(f.get(metric), int | float)]
    return sum(values) / len(values) if values else None


def sweep_table(root: Path, variants: Iterable[tuple[Path, Mapping[str, Any]]] | None = None
                ) -> dict[str, Any]:
    """{"metrics", "headline", "rows", "points": [{n, seed, row, metric: value}],
    "summary": {row: {metric: [{n, mean, std, seeds}]}}} over the variants: (directory,
    {name, heuristics, seed}) each, by default every ``<root>/*/variant.json``."""
    import numpy as np

    if variants is None:
        variants = [(f.parent, json.loads(f.read_text()))
                    for f in sorted(Path(root).glob("*/variant.json"))]
    points: list[dict[str, Any]] = []
    every: list[dict[str, Any]] = []  # SWEEP_ROWS and the base rows, for the deltas
    metrics: set[str] = set()
    for vdir, variant in variants:
        for arm, ckpts in load_results(vdir).items():
            for ckpt, figures in ckpts.items():
                names = {m for f in figures.values() for m in f if m.startswith("pass@")}
                point = {"variant": variant["name"], "n": variant.get("heuristics"),
                         "seed": variant["seed"], "row": f"{arm}/{ckpt}"}
                point.update({m: _math_average(figures, m) for m in names})
                every.append(point)
                if (arm, ckpt) in SWEEP_ROWS:
                    metrics |= names
                    points.append(point)
    ordered = sorted(metrics, key=k_of)
    summary: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for arm, ckpt in SWEEP_ROWS:
        row = f"{arm}/{ckpt}"
        mine = [p for p in points if p["row"] == row]
        if not mine:
            continue
        summary[row] = {}
        for metric in ordered:
            cells = []
            for n in sorted({p["n"] or 0 for p in mine}):
                vals = np.array([p[metric] for p in mine if (p["n"] or 0) == n
                                 and p.get(metric) is not None], dtype=float)
                if len(vals):
                    cells.append({"n": n, "mean": float(vals.mean()), "seeds": len(vals),
                                  "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0})
            summary[row][metric] = cells
    headline = f"pass@{HEADLINE_K}" if f"pass@{HEADLINE_K}" in metrics else (
        ordered[-1] if ordered else None)
    return {"metrics": ordered, "headline": headline, "rows": list(summary),
            "points": points, "summary": summary, "deltas": sweep_deltas(every, ordered)}


def sweep_deltas(points: list[dict[str, Any]], metrics: list[str]) -> list[dict[str, Any]]:
    """The pre-registered comparisons' math-average differences, variant by variant, with
    their mean, standard deviation and range across the variants of one n (a seed sweep's
    spread of its headline deltas)."""
    import numpy as np

    at = {(p["variant"], p["row"]): p for p in points}
    out = []
    for row, versus in PREREGISTERED:
        for metric in metrics:
            for n in sorted({p["n"] or 0 for p in points}):
                per = [{"seed": p["seed"], "value": p[metric] - at[(p["variant"], versus)][metric]}
                       for p in points if p["row"] == row and (p["n"] or 0) == n
                       and (p["variant"], versus) in at and p.get(metric) is not None
                       and at[(p["variant"], versus)].get(metric) is not None]
                if not per:
                    continue
                vals = np.array([d["value"] for d in per])
                out.append({"comparison": f"{row} - {versus}", "metric": metric, "n": n,
                            "seeds": per, "mean": float(vals.mean()),
                            "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
                            "min": float(vals.min()), "max": float(vals.max())})
    return out
