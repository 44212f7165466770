"""The sweep planner: (sweep run, observed variants, report step, now) -> (actions, status).

Pure, like :mod:`polya_trainer.engine.planner`: no I/O. Two executors carry out its actions:
the operator (``polya_operator/sweep.py``: one child PolyaRun per variant, then a report Job)
and the local runner (``engine/local.py``, ``run_sweep``: one variant directory after another,
then the report in process).

Rules (the same for both executors):

* **Variants.** :func:`expand` turns a run with ``spec.sweep`` into one ordinary run per
  (heuristics count, seed), in a deterministic order (counts, then seeds, ascending), named
  ``<parent>-h<n>-s<seed>``. Every variant generates with the same settings (the largest
  count, the parent's seed pinned in ``stages.generate.seed``), so its generate stage has one
  cache key (:mod:`polya_trainer.runtime.cache`) and runs once;
  ``stages.midtrain.heuristicsCount`` makes a variant mid-train on the first n heuristics of
  that data, and ``spec.seed`` is the variant's seed for midtrain, rl and evaluate. With
  ``storage.uri`` each variant gets its own prefix under the sweep's (:func:`variant_uri`).
* **Which variant starts when.** Variants start in that order. The first starts alone; the
  others wait until it has generated (its GenerateCompleted condition, or it finished; a
  vanilla-only sweep generates nothing and does not wait), so that they find the data in the
  stage cache instead of all generating together. After that, at most
  ``Policy.max_parallel`` variants are in progress at once (None: all). The operator passes 1
  when the workspace is a ReadWriteOnce claim (one node: the same rule as for a run's arms,
  ``resources.parallel_arms``), the local runner always 1 (one run at a time on this machine).
  A failed variant stops the start of any further one.
* **The report.** Once every variant has succeeded, one :class:`WriteReport`: the sweep report
  over the variants' workspaces (``polya sweep-report``; the operator runs it as a Job). The
  sweep succeeds when that step has finished; a failed report does not fail it (the variants
  did succeed; the Succeeded condition's message says so and ``status.report`` stays unset).
* **Status.** ``status.sweep`` lists every variant (Pending until started, then Running,
  Succeeded or Failed) with counts; ``progress`` is the mean of the variants'; the conditions
  Running, Succeeded and Failed summarise them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from polya_trainer import spec as s
from polya_trainer.engine import planner as p
from polya_trainer.runtime.workspace import REPORT_DIR, RunDir, Workspace

MAX_NAME = 40  # spec.ObjectMeta.name
SWEEP_LABEL = "polya.dev/sweep"  # names the parent run on each child
REPORT = f"{REPORT_DIR}/sweep.md"  # status.report of a sweep, in the parent's workspace


@dataclass(frozen=True)
class Variant:
    name: str
    heuristics: int | None  # n, when the sweep varies the heuristic count
    seed: int
    run: s.PolyaRun

    def card(self, parent: str) -> dict[str, Any]:
        """What the sweep report reads of a variant (``variant.json`` in local runs)."""
        return {"parent": parent, "name": self.name, "heuristics": self.heuristics,
                "seed": self.seed}


def variant_name(parent: str, suffix: str) -> str:
    """``<parent>-<suffix>``, RFC 1035 and at most 40 characters: a parent name too long for
    the suffix is cut and keeps a short hash of the whole name, so names stay distinct."""
    name = f"{parent}-{suffix}"
    if len(name) <= MAX_NAME:
        return name
    tag = hashlib.sha256(parent.encode()).hexdigest()[:6]
    head = parent[: MAX_NAME - len(suffix) - len(tag) - 2].rstrip("-")
    return f"{head}-{tag}-{suffix}"


def variant_uri(uri: str, name: str) -> str:
    """A variant's prefix on the object store: ``<the sweep's uri>/<variant>``, as its
    workspace is ``<the sweep's directory>/<variant>`` locally."""
    return f"{uri.rstrip('/')}/{name}"


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
            if run.spec.storage.uri:  # the variant's own prefix under the sweep's
                spec["storage"] = {**body["storage"],
                                   "uri": variant_uri(run.spec.storage.uri, name)}
            meta: dict[str, Any] = {"name": name,
                                    "labels": {**labels, SWEEP_LABEL: run.metadata.name}}
            if run.metadata.namespace:
                meta["namespace"] = run.metadata.namespace
            child = s.parse_run({"apiVersion": s.API_VERSION, "kind": s.KIND,
                                 "metadata": meta, "spec": spec})
            out.append(Variant(name, n, seed, child))
    return out


def report_inputs(run: s.PolyaRun, variants_dir: RunDir) -> list[tuple[Path, dict[str, Any]]]:
    """(workspace, card) of every variant, the variants' workspaces side by side in
    ``variants_dir`` (the sweep's directory locally, the volume's root in a pod)."""
    return [(Workspace.for_run(variants_dir, v.name).root, v.card(run.metadata.name))
            for v in expand(run)]


# --------------------------------------------------------------------------- observation


@dataclass(frozen=True)
class Child:
    """A started variant as an executor observed it (a variant not started has none)."""

    state: str = "Running"  # Running (also Pending, Suspended) | Succeeded | Failed
    generated: bool = False  # its generate stage is done (or it finished)
    progress: float = 0.0

    @classmethod
    def of(cls, status: s.PolyaRunStatus | Mapping[str, Any] | None) -> Child:
        """A started variant from its PolyaRunStatus (the child's, or its status.json)."""
        st = p.as_status(status)
        state = p.run_state(st)
        state = state if state in ("Succeeded", "Failed") else "Running"
        gen = p.condition(st, p.completed_condition("generate"))
        return cls(state, state == "Succeeded" or (gen is not None and gen.status == "True"),
                   100.0 if state == "Succeeded" else st.progress)


@dataclass(frozen=True)
class Policy:
    max_parallel: int | None = None  # variants in progress at once (None: all)


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class StartVariant:
    """Start a variant run (operator: create the child PolyaRun; local: run its directory)."""

    variant: Variant


@dataclass(frozen=True)
class WriteReport:
    """Write the sweep report (operator: a Job of the trainer image; local: in process)."""


@dataclass
class SweepPlan:
    actions: list[StartVariant | WriteReport] = field(default_factory=list)
    status: s.PolyaRunStatus = field(default_factory=s.PolyaRunStatus)

    @property
    def starts(self) -> list[Variant]:
        return [a.variant for a in self.actions if isinstance(a, StartVariant)]

    @property
    def report(self) -> bool:
        return any(isinstance(a, WriteReport) for a in self.actions)


# --------------------------------------------------------------------------- the planner


def _due(variants: list[Variant], children: Mapping[str, Child], policy: Policy,
         no_generate: bool) -> list[Variant]:
    """The variants to start now (see the module's rules)."""
    first = children.get(variants[0].name)
    if any(c.state == "Failed" for c in children.values()):
        return []
    if first is None:
        return variants[:1]
    if not (no_generate or first.generated):
        return []
    busy = sum(c.state == "Running" for c in children.values())
    room = len(variants) if policy.max_parallel is None else policy.max_parallel - busy
    return [v for v in variants if v.name not in children][:max(0, room)]


def plan(run: s.PolyaRun, children: Mapping[str, Child], report: str | None,
         old: s.PolyaRunStatus | Mapping[str, Any] | None, now: datetime, *,
         generation: int | None = None, policy: Policy = Policy()) -> SweepPlan:
    """Decide the next actions and the new status of a sweep.

    ``children``: the started variants by name; ``report``: the report step's phase (None:
    not started, else Running, Succeeded or Failed); ``old``: the sweep's last status.
    """
    old = p.as_status(old)
    variants = expand(run)
    starts = _due(variants, children, policy, run.spec.arms == ["vanilla"])
    states = [children[v.name].state if v.name in children else "Pending" for v in variants]
    done, failed = states.count("Succeeded"), states.count("Failed")
    all_done = done == len(variants)
    out = SweepPlan(actions=[StartVariant(v) for v in starts])
    if all_done and report is None:
        out.actions.append(WriteReport())
    finished = all_done and report in ("Succeeded", "Failed")
    rows = [s.SweepVariantStatus(name=v.name, heuristics=v.heuristics, seed=v.seed,
                                 state=state, progress=children[v.name].progress
                                 if v.name in children else 0.0)
            for v, state in zip(variants, states, strict=True)]
    status = s.PolyaRunStatus(
        sweep=s.SweepStatus(variants=len(variants), created=len(children) + len(starts),
                            succeeded=done, failed=failed, children=rows),
        progress=round(sum(row.progress for row in rows) / len(rows), 2),
        observed_generation=generation, start_time=old.start_time or now,
        completion_time=(old.completion_time or now) if finished else None,
        report=REPORT if finished and report == "Succeeded" else None)
    count = f"{done}/{len(variants)} variants"
    reason = "AllVariantsSucceeded" if finished else (
        "WritingReport" if all_done else "VariantsRunning")
    note = "" if report in (None, "Succeeded") else "; the sweep report was not written"
    failures = ", ".join(v.name for v, st in zip(variants, states, strict=True) if st == "Failed")
    for kind, value, why, text in (
            ("Running", not finished and not failed, reason,
             f"{count} succeeded; writing the sweep report" if reason == "WritingReport"
             else f"{count} done"),
            ("Succeeded", finished, reason, f"{count} succeeded{note}"),
            ("Failed", failed > 0, "VariantFailed" if failed else "NoFailure", failures)):
        p.set_condition(status, old, kind, "True" if value else "False", why, text, now,
                        generation)
    out.status = status
    return out
