"""The sweep executor on Kubernetes: a PolyaRun with ``spec.sweep`` is a parent whose
variants run as child PolyaRuns. The sweep planner (:mod:`polya_trainer.engine.sweep`) decides
which variants exist, which start when, when the report is due, and the parent's status; this
module observes and carries out its actions.

* **Observation** comes from kopf's indexes, like a run's (handlers.py): each variant by its
  planned name in the PolyaRun index (a namesake owned by another run does not count), the
  report Job in the Job index under the parent's ``polya.dev/run`` label. A child's events
  queue its parent on the operator's one work queue, so a parent gets one reconcile at a
  time, and a failed one comes back a resync interval later, as a run's does.
* **StartVariant**: the child PolyaRun, labelled ``polya.dev/sweep=<parent>`` and owned by
  the parent (deleting the sweep deletes them). Every child mounts the parent's workspace
  (``spec.storage.pvc``, or the ``<parent>-workspace`` claim created here), so the stage cache
  under ``/workspace/.polya-cache`` is shared. With ``storage.uri`` each child has its own
  prefix under the parent's (set by the planner's expansion) and shares no cache.
* **WriteReport**: the parent's spec snapshot (a ConfigMap) and the Job
  ``resources.sweep_report_job``, which writes ``/workspace/<parent>/report/sweep.md``.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any, Protocol

import kopf
from polya_trainer import spec as s
from polya_trainer.engine import planner as p
from polya_trainer.engine import sweep as sw

from . import executor as x
from . import kube
from . import resources as r

log = logging.getLogger("polya_operator.sweep")
JUST_CREATED = 120.0  # seconds a created child may take to reach the index
Key = tuple[str, str]


class Operator(Protocol):
    """What this module uses of handlers.Operator (its indexes, queue and caches)."""

    config: Any  # .image
    known: dict[str, float]  # name -> when created (monotonic)
    written: dict[Key, tuple[str, s.PolyaRunStatus]]

    def enqueue(self, key: Key) -> None: ...
    def _run(self, key: Key) -> dict[str, Any] | None: ...
    def _items(self, index: str, key: Key) -> list[dict[str, Any]]: ...
    def _status(self, key: Key, run: dict[str, Any]) -> s.PolyaRunStatus: ...


def is_parent(spec: Any, **_: Any) -> bool:
    """A sweep's parent run (the main handlers hand it to :func:`reconcile`)."""
    return bool((spec or {}).get("sweep"))


def policy(spec: s.PolyaRunSpec) -> sw.Policy:
    """Variants side by side unless a ReadWriteOnce workspace makes them take turns."""
    return sw.Policy(max_parallel=None if r.parallel_arms(spec) else 1)


def child_body(meta: dict[str, Any], spec: s.PolyaRunSpec, v: sw.Variant) -> dict[str, Any]:
    """The child PolyaRun of a variant: on the parent's claim (or its own store prefix)."""
    body = v.run.dump()
    if spec.storage.uri is None:
        body["spec"]["storage"] = {"pvc": spec.storage.pvc or r.workspace_claim_name(
            meta["name"]), "mountPath": spec.storage.mount_path, "accessMode": r.access_mode(spec)}
    body["metadata"]["namespace"] = meta.get("namespace")
    body["metadata"]["ownerReferences"] = [r.owner_reference(meta)]
    return body


def _observe(op: Operator, key: Key, parent: s.PolyaRun, uid: str | None,
             old: s.PolyaRunStatus) -> tuple[dict[str, sw.Child], str | None]:
    """(the started variants, the report step's phase) from kopf's indexes. A child or Job
    created moments ago that the index does not show yet counts as started."""
    ns, recent = key[0], time.monotonic() - JUST_CREATED
    children: dict[str, sw.Child] = {}
    for v in sw.expand(parent):
        child = op._run((ns, v.name))
        if child is not None and kube.controller_uid(child) in (None, uid):
            # The index, not our last write: each of its events queues this parent.
            children[v.name] = sw.Child.of(child.get("status"))
        elif op.known.get(v.name, 0.0) > recent:
            children[v.name] = sw.Child()
    name = r.sweep_report_job_name(key[1])
    job = next((j for j in op._items("jobs", key) if j["metadata"]["name"] == name
                and j["metadata"].get("owner") in (None, uid)), None)
    if job is not None:
        phase = x.observe_job(job).phase
        return children, phase if phase in ("Succeeded", "Failed") else "Running"
    if op.known.get(name, 0.0) > recent:
        return children, "Running"
    if old.completion_time and old.sweep and old.sweep.succeeded == old.sweep.variants:
        return children, "Succeeded" if old.report else "Failed"  # its Job is gone since
    return children, None


async def reconcile(op: Operator, key: Key, run: dict[str, Any]) -> None:
    """Plan the sweep from the indexes; create its due children or report Job, and write
    its status when it changed."""
    ns, name = key
    meta = run["metadata"]
    try:
        parent = s.parse_run({"apiVersion": s.API_VERSION, "kind": s.KIND, "metadata": meta,
                              "spec": run.get("spec")})
    except s.SpecError as exc:  # the webhook or CRD rules let a bad sweep through
        log.warning("sweep %s/%s is invalid: %s", ns, name, exc)
        return
    uid = meta.get("uid")
    old = op._status(key, run)
    children, report = _observe(op, key, parent, uid, old)
    plan = sw.plan(parent, children, report, old, datetime.now(UTC).replace(microsecond=0),
                   generation=meta.get("generation"), policy=policy(parent.spec))
    api = kube.client()
    if plan.starts and r.creates_claim(parent.spec):
        await api.create("v1", "persistentvolumeclaims", ns, r.pvc(meta, parent.spec))
    for v in plan.starts:
        op.known[v.name] = time.monotonic()
        await api.create(s.API_VERSION, s.PLURAL, ns, child_body(meta, parent.spec, v))
        await api.event(run, "VariantCreated", f"created {v.name}")
    if plan.report:
        job = r.sweep_report_job(meta, parent.spec, op.config.image)
        op.known[job["metadata"]["name"]] = time.monotonic()
        await api.create("v1", "configmaps", ns, r.configmap(meta, parent.spec))
        await api.create("batch/v1", "jobs", ns, job)
        await api.event(run, "SweepReportStarted", f"writing the sweep report "
                        f"({job['metadata']['name']})")
    if plan.status != old:
        await api.patch_run_status(ns, name, p.status_patch(plan.status))
        op.written[key] = (uid or "", plan.status)


def register(registry: kopf.OperatorRegistry, op: Operator) -> None:
    """A child's events queue its parent (the parent's own events queue it already)."""

    async def on_child(labels: dict[str, str], namespace: str, **_: Any) -> None:
        op.enqueue((namespace, labels[sw.SWEEP_LABEL]))

    kopf.on.event(s.GROUP, s.VERSION, s.PLURAL, registry=registry, id="sweep-child",
                  labels={sw.SWEEP_LABEL: kopf.PRESENT})(on_child)
