"""Sweep PolyaRuns (``spec.sweep``): one child PolyaRun per variant, and an aggregated status.

A sweep run is a parent only: the main handlers skip it (handlers.py), and these handlers
create its children and summarise them. :func:`plan` is pure; :func:`reconcile` does the I/O.

* **Children** are the variants of :func:`polya_trainer.engine.sweep.expand`, named
  ``<parent>-h<n>-s<seed>``, labelled ``polya.dev/sweep=<parent>`` and owned by the parent
  (ownerReferences: deleting the sweep deletes them).
* **One workspace.** Every child mounts the parent's workspace (``spec.storage.pvc``, or the
  ``<parent>-workspace`` claim this module creates), so the stage cache under
  ``/workspace/.polya-cache`` is shared. With ``storage.uri`` each child gets its own prefix
  under the parent's, and shares no cache.
* **Generation once.** The first child is created at once; the others once its generate
  stage has completed (condition GenerateCompleted), so that their generate stages find it
  in the cache instead of all generating together. With a ReadWriteOnce workspace, whose pods
  must share one node, children run one after another.
* **Status.** ``status.sweep`` lists every variant (Pending until created, then Running,
  Succeeded or Failed) with counts; ``progress`` is the mean of the children's; the
  conditions Running, Succeeded and Failed summarise them. A failed child stops the creation
  of further children.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import UTC, datetime
from typing import Any

import kopf
from polya_trainer import spec as s
from polya_trainer.engine.sweep import SWEEP_LABEL, Variant, expand

from . import kube
from . import resources as r

log = logging.getLogger("polya_operator.sweep")


def is_parent(spec: Any, **_: Any) -> bool:
    """kopf ``when=`` filter (and the main handlers' guard): a sweep's parent run."""
    return bool((spec or {}).get("sweep"))


def _cond(run: dict[str, Any] | None, kind: str) -> bool:
    for c in ((run or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return c.get("status") == "True"
    return False


def _state(child: dict[str, Any] | None) -> str:
    if child is None:
        return "Pending"
    if _cond(child, "Succeeded"):
        return "Succeeded"
    if _cond(child, "Failed"):
        return "Failed"
    return "Running"


def child_storage(parent: s.PolyaRun) -> dict[str, Any]:
    """The children's storage: the parent's workspace (or a prefix under its store)."""
    st = parent.spec.storage
    if st.uri is not None:
        return {}  # set per child (its own prefix)
    out: dict[str, Any] = {"pvc": st.pvc or r.workspace_claim_name(parent.metadata.name),
                           "mountPath": st.mount_path, "accessMode": r.access_mode(parent.spec)}
    return out


def child_body(parent_obj: dict[str, Any], parent: s.PolyaRun, v: Variant) -> dict[str, Any]:
    body = v.run.dump()
    spec = body["spec"]
    st = parent.spec.storage
    if st.uri is not None:
        spec["storage"] = {**st.dump(), "uri": f"{st.uri.rstrip('/')}/{v.name}"}
    else:
        spec["storage"] = child_storage(parent)
    meta = body["metadata"]
    meta["namespace"] = parent_obj["metadata"].get("namespace")
    meta["ownerReferences"] = [r.owner_reference(parent_obj["metadata"])]
    return body


def _parallel(parent: s.PolyaRun) -> bool:
    return parent.spec.storage.uri is not None or r.access_mode(parent.spec) == "ReadWriteMany"


def plan(parent_obj: dict[str, Any], children: dict[str, dict[str, Any]],
         now: datetime) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(child PolyaRuns to create, the parent's new status) from the parent and its existing
    children by name. Pure."""
    parent = s.parse_run({k: v for k, v in parent_obj.items() if k != "status"})
    variants = expand(parent)
    states = [_state(children.get(v.name)) for v in variants]
    create: list[dict[str, Any]] = []
    first = children.get(variants[0].name)
    no_generate = parent.spec.arms == ["vanilla"]
    generated = first is not None and (no_generate or _cond(first, "GenerateCompleted")
                                       or _cond(first, "Succeeded"))
    if "Failed" not in states:
        if first is None:
            create.append(child_body(parent_obj, parent, variants[0]))
        elif generated:
            for v, state in zip(variants[1:], states[1:], strict=True):
                busy = any(st == "Running" for st in states)
                if state != "Pending":
                    continue
                if not _parallel(parent) and (busy or create):
                    break  # one workspace on one node: one child at a time
                create.append(child_body(parent_obj, parent, v))
    rows = []
    for v, state in zip(variants, states, strict=True):
        child = children.get(v.name) or {}
        progress = 100.0 if state == "Succeeded" else float(
            (child.get("status") or {}).get("progress") or 0.0)
        rows.append(s.SweepVariantStatus(name=v.name, heuristics=v.heuristics, seed=v.seed,
                                         state=state, progress=progress))
    done, failed = states.count("Succeeded"), states.count("Failed")
    sweep = s.SweepStatus(variants=len(variants), created=len(variants) - states.count(
        "Pending") + len(create), succeeded=done, failed=failed, children=rows)
    old = s.PolyaRunStatus.model_validate(parent_obj.get("status") or {})
    finished = done == len(variants)
    verdicts = [
        ("Running", not finished and not failed, "VariantsRunning",
         f"{done}/{len(variants)} variants done"),
        ("Succeeded", finished, "AllVariantsSucceeded" if finished else "VariantsRunning",
         f"{done}/{len(variants)} variants succeeded"),
        ("Failed", failed > 0, "VariantFailed" if failed else "NoFailure",
         ", ".join(v.name for v, st in zip(variants, states, strict=True) if st == "Failed")),
    ]
    previous = {c.type: c for c in old.conditions}
    conditions = []
    for kind, flag, reason, message in verdicts:
        status = "True" if flag else "False"
        before = previous.get(kind)
        since = before.last_transition_time if before and before.status == status else now
        conditions.append(s.Condition(type=kind, status=status, reason=reason, message=message,
                                      last_transition_time=since,
                                      observed_generation=parent_obj["metadata"].get(
                                          "generation")))
    status = s.PolyaRunStatus(
        conditions=conditions, sweep=sweep,
        progress=round(sum(row.progress for row in rows) / len(rows), 2),
        observed_generation=parent_obj["metadata"].get("generation"),
        start_time=old.start_time or now,
        completion_time=(old.completion_time or now) if finished else None)
    return create, status.dump()


# --------------------------------------------------------------------------- I/O

_locks: dict[tuple[str, str], asyncio.Lock] = {}


async def reconcile(namespace: str, name: str) -> None:
    """Create the parent's due children (and its workspace claim) and patch its status."""
    api = kube.client()
    base = f"/apis/{s.API_VERSION}/namespaces/{namespace}/{s.PLURAL}"
    async with _locks.setdefault((namespace, name), asyncio.Lock()):
        try:
            parent = await api.request("GET", f"{base}/{name}")
        except kube.ApiError as exc:
            if exc.status == 404:
                return
            raise
        if not is_parent(parent.get("spec")) or parent["metadata"].get("deletionTimestamp"):
            return
        listed = await api.request("GET", f"{base}?labelSelector={SWEEP_LABEL}%3D{name}")
        uid = parent["metadata"].get("uid")
        children = {c["metadata"]["name"]: c for c in (listed or {}).get("items") or []
                    if kube.controller_uid(c) in (None, uid)}
        try:
            create, status = plan(parent, children, datetime.now(UTC).replace(microsecond=0))
        except s.SpecError as exc:  # the webhook or CRD rules let a bad sweep through
            log.warning("sweep %s/%s is invalid: %s", namespace, name, exc)
            return
        run = s.parse_run({k: v for k, v in parent.items() if k != "status"})
        if create and r.creates_claim(run.spec):
            await api.create("v1", "persistentvolumeclaims", namespace,
                             r.pvc(parent["metadata"], run.spec))
        for body in create:
            await api.create(s.API_VERSION, s.PLURAL, namespace, body)
            await api.event(parent, "VariantCreated", f"created {body['metadata']['name']}")
        if status != s.PolyaRunStatus.model_validate(parent.get("status") or {}).dump():
            await api.patch_run_status(namespace, name, status)


async def _safely(namespace: str, name: str) -> None:
    """Reconcile; a failure is logged and retried on the next event of the sweep or of a
    child (children report progress often while they run)."""
    try:
        await reconcile(namespace, name)
    except Exception:
        log.exception("reconcile of sweep %s/%s failed", namespace, name)


def register(registry: kopf.OperatorRegistry, namespaces: list[str] | None = None) -> None:
    """The sweep handlers: events of a parent and of its children reconcile the parent;
    `namespaces`: the watched ones (None or []: cluster-wide)."""
    g, v, pl = s.GROUP, s.VERSION, s.PLURAL

    async def on_parent(type: str | None, namespace: str, name: str, **_: Any) -> None:
        if type != "DELETED":
            await _safely(namespace, name)

    async def on_child(labels: dict[str, str], namespace: str, **_: Any) -> None:
        await _safely(namespace, labels[SWEEP_LABEL])

    tasks: list[asyncio.Task[None]] = []

    async def resync(**_: Any) -> None:
        """Every POLYA_RESYNC_SECONDS, reconcile every sweep parent (a failed reconcile with
        no later event would otherwise wait forever)."""
        interval = float(os.environ.get("POLYA_RESYNC_SECONDS", "30"))

        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    runs = await kube.client().list_runs(list(namespaces or [None]))
                except Exception as exc:  # the API is unreachable: try again later
                    log.warning("sweep resync: %s", exc)
                    continue
                for run in runs:
                    if is_parent(run.get("spec")):
                        meta = run["metadata"]
                        await _safely(meta.get("namespace"), meta["name"])

        tasks.append(asyncio.create_task(loop()))

    async def stop(**_: Any) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    kopf.on.event(g, v, pl, registry=registry, id="sweep-parent", when=is_parent)(on_parent)
    kopf.on.event(g, v, pl, registry=registry, id="sweep-child",
                  labels={SWEEP_LABEL: kopf.PRESENT})(on_child)
    kopf.on.startup(registry=registry, id="sweep-resync")(resync)
    kopf.on.cleanup(registry=registry, id="sweep-stop")(stop)
