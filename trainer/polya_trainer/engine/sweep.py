"""Sweeps: one PolyaRun with ``spec.sweep`` stands for a set of variant runs.

:func:`expand` is pure: a sweep run becomes one ordinary run per (heuristics count, seed),
in a deterministic order (counts, then seeds, ascending). Every variant generates with the
same settings (the largest count, the parent's seed pinned in ``stages.generate.seed``),
so its generate stage has one cache key (:mod:`polya_trainer.runtime.cache`) and runs once;
``stages.midtrain.heuristicsCount`` makes a variant mid-train on the first n heuristics of
that data, and ``spec.seed`` is the variant's seed for midtrain, rl and evaluate.

:func:`run_sweep` runs the variants one after another on this machine, each under
``<workdir>/<variant>/`` with the ordinary local runner; the cache lives beside them in
``<workdir>/.polya-cache``. The operator does the same with child PolyaRuns
(:mod:`polya_operator.sweep`).
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from polya_trainer import spec as s
from polya_trainer.runtime.workspace import Workspace

MAX_NAME = 40  # spec.ObjectMeta.name
SWEEP_LABEL = "polya.dev/sweep"  # names the parent run on each child


@dataclass(frozen=True)
class Variant:
    name: str
    heuristics: int | None  # n, when the sweep varies the heuristic count
    seed: int
    run: s.PolyaRun


def variant_name(parent: str, suffix: str) -> str:
    """``<parent>-<suffix>``, RFC 1035 and at most 40 characters: a parent name too long for
    the suffix is cut and keeps a short hash of the whole name, so names stay distinct."""
    name = f"{parent}-{suffix}"
    if len(name) <= MAX_NAME:
        return name
    tag = hashlib.sha256(parent.encode()).hexdigest()[:6]
    head = parent[: MAX_NAME - len(suffix) - len(tag) - 2].rstrip("-")
    return f"{head}-{tag}-{suffix}"


def is_sweep(run: s.PolyaRun) -> bool:
    return run.spec.sweep is not None


def expand(run: s.PolyaRun) -> list[Variant]:
    """The variant runs of a sweep run (an empty list for an ordinary run)."""
    sweep = run.spec.sweep
    if sweep is None:
        return []
    counts: list[int | None] = sorted(sweep.heuristics_count) if sweep.heuristics_count else [None]
    seeds = sorted(sweep.seeds) if sweep.seeds else [run.spec.seed]
    body = run.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    body.pop("sweep")
    stages = body.setdefault("stages", {})
    stages.setdefault("generate", {}).setdefault("seed", run.spec.seed)
    if sweep.heuristics_count:
        body.setdefault("heuristics", {})["count"] = max(sweep.heuristics_count)
    labels = dict(run.metadata.model_extra.get("labels") or {}) if run.metadata.model_extra else {}
    out = []
    for n in counts:
        for seed in seeds:
            parts = ([f"h{n}"] if n is not None else []) + (
                [f"s{seed}"] if sweep.seeds else [])
            name = variant_name(run.metadata.name, "-".join(parts))
            spec = {**body, "seed": seed,
                    "stages": {**stages, "midtrain": {**stages.get("midtrain", {})}}}
            if n is not None:
                spec["stages"]["midtrain"]["heuristicsCount"] = n
            meta: dict[str, Any] = {"name": name,
                                    "labels": {**labels, SWEEP_LABEL: run.metadata.name}}
            if run.metadata.namespace:
                meta["namespace"] = run.metadata.namespace
            child = s.parse_run({"apiVersion": s.API_VERSION, "kind": s.KIND,
                                 "metadata": meta, "spec": spec})
            out.append(Variant(name, n, seed, child))
    return out


def sweep_in(path: str | Path) -> s.PolyaRun | None:
    """The file's first PolyaRun when it is a sweep; None otherwise (or when the file is
    invalid: the ordinary runner reports that)."""
    try:
        run = s.load_runs(path)[0]
    except (s.SpecError, OSError, ValueError):
        return None
    return run if is_sweep(run) else None


def run_sweep(run: s.PolyaRun, workdir: str | Path | None = None,
              arms: list[str] | None = None, quiet: bool = False) -> int:
    """Run every variant on this machine, one after another; then write the sweep report.

    Returns the first non-zero exit code of a variant (later variants are not started), or 0.
    """
    from polya_trainer.engine.local import default_workdir, run_file
    from polya_trainer.runtime.artifacts import atomic_write_json, atomic_write_text

    root = Path(workdir) if workdir else default_workdir(run.metadata.name)
    root.mkdir(parents=True, exist_ok=True)
    variants = expand(run)
    for i, v in enumerate(variants, 1):
        print(f"sweep {run.metadata.name}: variant {i}/{len(variants)} {v.name}",
              file=sys.stderr)
        vws = Workspace.for_run(root, v.name)
        vws.root.mkdir(exist_ok=True)
        path = atomic_write_text(vws.variant_spec, yaml.safe_dump(v.run.dump(), sort_keys=False))
        atomic_write_json(vws.variant_card, {"parent": run.metadata.name, "name": v.name,
                                             "heuristics": v.heuristics, "seed": v.seed})
        code = run_file(path, workdir=vws.root, arms=arms, quiet=quiet)
        if code != 0:
            return code
    try:
        from polya_trainer.report import write_sweep_report

        print(f"sweep report: {write_sweep_report(root)}")
    except Exception as exc:  # the variants did run; say why there is no report
        print(f"sweep report: not written ({type(exc).__name__}: {exc})", file=sys.stderr)
    return 0
