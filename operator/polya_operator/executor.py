"""The Kubernetes executor: observes Jobs and pods as planner ``Attempt``s, and turns the
planner's actions into Jobs, Services, ConfigMaps, claims and Events (``resources.py``
builds every manifest).

Order of one reconcile's writes: the spec ConfigMap and the claim first, then Services and
Jobs (a pod never waits for a volume that is not there yet), then deletions and patches,
then the status, then Events. A create that finds a deleted namesake's child of the same
name (garbage collection is asynchronous) raises ``kube.OwnedByAnother`` before any Job of
the new run is created: the run is reconciled again later.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from typing import Any

import aiohttp
from polya_trainer import spec as s
from polya_trainer.engine import planner as p
from polya_trainer.runtime import shards

from . import kube
from . import resources as r

JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
INDEX_KEY = "batch.kubernetes.io/job-completion-index"


def parse(raw: Any) -> s.PolyaRunSpec | s.SpecError:
    """The validated spec with the operator's resource defaults applied, or the error."""
    parsed = p.parse(raw)
    return parsed if isinstance(parsed, s.SpecError) else r.with_defaults(parsed)


def policy(spec: s.PolyaRunSpec) -> p.Policy:
    """Arms run at once unless a ReadWriteOnce workspace makes them take turns."""
    return p.Policy(max_parallel_arms=None if r.parallel_arms(spec) else 1)


# --------------------------------------------------------------------------- observation


def _cond(obj: Mapping[str, Any], kind: str, value: str = "True") -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind and c.get("status") == value:
            return c
    return None


def parse_progress(text: str | None) -> dict[str, Any] | None:
    """The trainer's progress JSON (a termination message), or None."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except (ValueError, TypeError):
        return None
    return data if isinstance(data, dict) and "stage" in data else None


# Container waiting reasons that do not clear by waiting, as the kubelet reports them:
# kubernetes pkg/kubelet/images/types.go (ErrImagePullBackOff "ImagePullBackOff",
# ErrImagePull "ErrImagePull", ErrImageNeverPull, ErrInvalidImageName "InvalidImageName")
# and pkg/kubelet/kuberuntime/kuberuntime_container.go (ErrCreateContainerConfig
# "CreateContainerConfigError", e.g. a secretKeyRef to a missing Secret;
# ErrCreateContainer "CreateContainerError").
STUCK_REASONS = frozenset({"ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull",
                           "InvalidImageName", "CreateContainerConfigError",
                           "CreateContainerError"})


def pod_problem(pods: list[dict[str, Any]]) -> tuple[str, str] | None:
    """Why a pod of the Job cannot start, as (reason, message), or None.

    A container waiting with one of STUCK_REASONS, or the scheduler's ``PodScheduled=False``
    condition (reason ``Unschedulable``; kubernetes pkg/scheduler/schedule_one.go
    ``handleSchedulingFailure`` sets it). The newest pod wins.
    """
    for pod in reversed(pods):
        st = pod.get("status") or {}
        if st.get("phase") not in (None, "Pending"):
            continue
        for cs in [*(st.get("initContainerStatuses") or []),
                   *(st.get("containerStatuses") or [])]:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in STUCK_REASONS:
                return waiting["reason"], f"container {cs.get('name', '?')}: " + \
                    str(waiting.get("message") or waiting["reason"])
        sched = _cond(pod, "PodScheduled", "False")
        if sched and sched.get("reason") == "Unschedulable":  # not SchedulingGated
            return "Unschedulable", str(sched.get("message") or "")
    return None


def _alive(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def _terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated") or \
            (cs.get("lastState") or {}).get("terminated")
        if term:
            return term
    return None


def completions(job: Mapping[str, Any]) -> int:
    """The Job's index count (1 unless a sharded stage's Indexed Job)."""
    return int((job.get("spec") or {}).get("completions") or 1)


def pod_index(pod: Mapping[str, Any]) -> int | None:
    """The completion index the Job controller gave an Indexed Job's pod: the annotation
    always, the label too since Kubernetes 1.28 (pkg/controller/job/indexed_job_utils.go,
    addCompletionIndexAnnotation, addCompletionIndexLabel)."""
    meta = pod.get("metadata") or {}
    for source in (meta.get("labels") or {}, meta.get("annotations") or {}):
        value = source.get(INDEX_KEY)
        if value is not None and str(value).isdigit():
            return int(value)
    return None


def index_progress(job: Mapping[str, Any], pods: list[dict[str, Any]],
                   live: Mapping[int, dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """A sharded stage's progress: per index the running pod's live snapshot (`live`, by
    index) or else its newest pod's termination message, summed (shards.combine_progress)."""
    count = completions(job)
    snaps: list[dict[str, Any] | None] = [None] * count
    for pod in sorted(pods, key=lambda x: (x.get("metadata") or {}).get(
            "creationTimestamp") or ""):  # oldest first: a retried index's newer pod wins
        i, term = pod_index(pod), _terminated(pod)
        if i is not None and i < count and term:
            snaps[i] = parse_progress(term.get("message")) or snaps[i]
    for i, snap in (live or {}).items():
        if i < count and snap:
            snaps[i] = dict(snap)
    return shards.combine_progress(snaps)


def observe_job(job: Mapping[str, Any], pods: list[dict[str, Any]] = ()) -> p.Attempt:
    """Reduce a child Job (and its pods) to an Attempt."""
    meta = job.get("metadata") or {}
    lab = meta.get("labels") or {}
    st = job.get("status") or {}
    pods = sorted(pods, key=lambda x: (x.get("metadata") or {}).get("creationTimestamp") or "")
    progress, oom = None, False
    for pod in pods:
        term = _terminated(pod)
        if term:
            progress = parse_progress(term.get("message")) or progress
            oom = oom or term.get("reason") == "OOMKilled"
    if completions(job) > 1:
        progress = index_progress(job, pods) or progress
    base = dict(name=meta.get("name", ""), arm=lab.get(p.LABEL_ARM, ""),
                stage=lab.get(p.LABEL_STAGE, ""), attempt=int(lab.get(p.LABEL_ATTEMPT, 0)),
                created=meta.get("creationTimestamp"), started=st.get("startTime"),
                preemptions=sum(1 for x in pods if _cond(x, "DisruptionTarget")),
                progress=progress)
    if _cond(job, "Complete") or _cond(job, "SuccessCriteriaMet"):
        return p.Attempt(phase="Succeeded", finished=st.get("completionTime"), **base)
    failed = _cond(job, "Failed")
    target = None if failed else _cond(job, "FailureTarget")
    if target and (any(_alive(x) for x in pods) or st.get("active") or st.get("terminating")):
        # The Job controller adds FailureTarget first and Failed once every pod has
        # terminated (kubernetes pkg/controller/job/job_controller.go, syncJob). The next
        # attempt would write the same workspace: wait.
        return p.Attempt(phase="Pending", reason=p.TERMINATING,
                         message="the attempt failed; waiting for its pods to terminate",
                         **base)
    failed = failed or target
    if failed:
        reason = failed.get("reason") or "Failed"
        message = failed.get("message") or ""
        retryable = True
        if oom:
            reason = "OOMKilled"
        elif reason == "PodFailurePolicy":  # exit code 2 (see resources.py)
            reason, retryable = "InvalidConfig", False
        elif progress and progress.get("reason") == "InvalidConfig":
            # A multi-process stage: the launcher (torch elastic) exits 1 whatever its
            # workers' codes; rank 0's termination message carries the verdict instead.
            reason, retryable = "InvalidConfig", False
            message = str(progress.get("message") or message)
        elif progress and progress.get("message"):
            message = str(progress["message"])
        return p.Attempt(phase="Failed", reason=reason, message=message, retryable=retryable,
                         finished=failed.get("lastTransitionTime"), **base)
    if (job.get("spec") or {}).get("suspend"):
        return p.Attempt(phase="Suspended", reason="JobSuspended", **base)
    if any((x.get("status") or {}).get("phase") == "Running" for x in pods) or \
            (st.get("ready") or 0) > 0:
        return p.Attempt(phase="Running", **base)
    problem = pod_problem(pods)
    if problem:
        return p.Attempt(phase="Pending", reason=problem[0], message=problem[1][:2048],
                         **base)
    return p.Attempt(phase="Pending", reason="PodPending", **base)


def lingering(name: str, pods: list[dict[str, Any]]) -> p.Attempt | None:
    """A recorded attempt whose Job is gone while pods of it are still alive, as an Attempt
    that is Pending with reason Terminating (None when none is alive).

    A Job deleted with background propagation leaves at once; the garbage collector then
    deletes its pods, and each stays until its containers have stopped, up to its grace
    period (kubernetes pkg/controller/garbagecollector/garbagecollector.go,
    attemptToDeleteItem; the pod's deletionGracePeriodSeconds). Until then they may still
    write the workspace, so the planner starts nothing in their place."""
    alive = [pod for pod in pods if _alive(pod)]
    if not alive:
        return None
    lab = (alive[0].get("metadata") or {}).get("labels") or {}
    return p.Attempt(name=name, arm=lab.get(p.LABEL_ARM, ""), stage=lab.get(p.LABEL_STAGE, ""),
                     attempt=int(lab.get(p.LABEL_ATTEMPT, 0)), phase="Pending",
                     reason=p.TERMINATING, message=f"{name} is gone; waiting for its "
                     f"{len(alive)} pod(s) to terminate")


def compact_job(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the index keeps of a Job (what ``observe_job`` reads, and its owner)."""
    meta = body.get("metadata") or {}
    return {"metadata": {"name": meta.get("name"), "labels": dict(meta.get("labels") or {}),
                         "creationTimestamp": meta.get("creationTimestamp"),
                         "uid": meta.get("uid"), "owner": kube.controller_uid(body)},
            "spec": {"suspend": bool((body.get("spec") or {}).get("suspend")),
                     "completions": (body.get("spec") or {}).get("completions")},
            "status": dict(body.get("status") or {})}


def compact_pod(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    st = body.get("status") or {}
    port = r.METRICS_PORT
    for c in (body.get("spec") or {}).get("containers") or []:
        for pt in c.get("ports") or []:
            if pt.get("name") == "metrics":
                port = pt.get("containerPort", port)
    index = (meta.get("annotations") or {}).get(INDEX_KEY)
    return {"metadata": {"name": meta.get("name"), "labels": dict(meta.get("labels") or {}),
                         "annotations": {INDEX_KEY: index} if index is not None else {},
                         "creationTimestamp": meta.get("creationTimestamp"),
                         "owner": kube.controller_uid(body)},
            "status": {"phase": st.get("phase"), "podIP": st.get("podIP"),
                       "conditions": st.get("conditions") or [],
                       "containerStatuses": st.get("containerStatuses") or []},
            "port": port}


def job_of_pod(labels: Mapping[str, str]) -> str | None:
    for key in JOB_NAME_LABELS:
        if labels.get(key):
            return labels[key]
    return None


async def http_progress(pod: Mapping[str, Any], timeout: float = 2.0,
                        session: aiohttp.ClientSession | None = None) -> dict[str, Any] | None:
    """The trainer's /progress JSON from a running pod (None when unreachable)."""
    ip = (pod.get("status") or {}).get("podIP")
    if not ip:
        return None
    url = f"http://{ip}:{pod.get('port', r.METRICS_PORT)}/progress"
    try:
        async with contextlib.AsyncExitStack() as stack:
            sess = session or await stack.enter_async_context(aiohttp.ClientSession())
            resp = await stack.enter_async_context(
                sess.get(url, timeout=aiohttp.ClientTimeout(total=timeout)))
            if resp.status != 200:
                return None
            data = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    return data if isinstance(data, dict) and "stage" in data else None


async def poll_progress(pods: list[Mapping[str, Any]], timeout: float = 1.0,
                        budget: float = 10.0, concurrency: int = 32) -> dict[str, dict[str, Any]]:
    """Live /progress of many pods at once: at most ``concurrency`` in flight, ``timeout``
    each, ``budget`` seconds in all (a NetworkPolicy that drops the operator's packets must
    not stretch a resync past the liveness window). Pod name -> JSON; a pod that did not
    answer in time is left out (its stage keeps its last progress)."""
    out: dict[str, dict[str, Any]] = {}
    if not pods:
        return out
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency, force_close=True)) as sess:
        async def one(pod: Mapping[str, Any]) -> None:
            async with sem:
                data = await http_progress(pod, timeout, sess)
            if data is not None:
                out[(pod.get("metadata") or {}).get("name") or ""] = data

        tasks = [asyncio.create_task(one(pod)) for pod in pods]
        _, late = await asyncio.wait(tasks, timeout=budget)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
    return out


# --------------------------------------------------------------------------- actions


def manifests(action: p.Action, meta: Mapping[str, Any], spec: s.PolyaRunSpec | None,
              image: str | None = None) -> list[dict[str, Any]]:
    """The objects an action creates, in creation order (none for the others)."""
    meta = dict(meta)
    if spec is None:
        return []
    if isinstance(action, p.SnapshotSpec):
        return [r.configmap(meta, spec)]
    if isinstance(action, p.PrepareWorkspace):
        return [r.pvc(meta, spec)] if r.creates_claim(spec) else []
    if isinstance(action, p.StartAttempt):
        job = r.job(meta, spec, action.arm, action.stage, action.attempt, image=image)
        svc = [r.service(meta, action.name, action.arm, action.stage)] if action.nodes > 1 \
            else []
        return [*svc, job]
    return []


def refusal(exc: kube.ApiError) -> tuple[str, str]:
    """(reason, message) of a create the API server refused: a ResourceQuota (403 "exceeded
    quota", plugin/pkg/admission/resourcequota), RBAC, or an admission webhook or policy."""
    try:
        message = str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (TypeError, ValueError):
        message = str(exc.reason)
    kind = "QuotaExceeded" if "exceeded quota" in message else (
        "Forbidden" if exc.status == 403 else "AdmissionRefused")
    return kind, message[:2048]


_PLURALS = {"ConfigMap": ("v1", "configmaps"), "PersistentVolumeClaim":
            ("v1", "persistentvolumeclaims"), "Service": ("v1", "services"),
            "Job": ("batch/v1", "jobs")}


async def apply(api: kube.Kube, run: Mapping[str, Any], plan: p.Plan,
                spec: s.PolyaRunSpec | None, image: str | None,
                status_changed: bool) -> list[str]:
    """Carry out a plan (``spec`` None: an invalid run, whose plan holds Events only);
    returns the names of the Jobs created."""
    meta = run["metadata"]
    ns = meta["namespace"]
    first = [m for a in plan.actions if isinstance(a, p.SnapshotSpec | p.PrepareWorkspace)
             for m in manifests(a, meta, spec, image)]
    await asyncio.gather(*(api.create(*_PLURALS[m["kind"]], ns, m) for m in first))
    started = [a for a in plan.actions if isinstance(a, p.StartAttempt)]
    created: list[str] = []
    refused: dict[tuple[str, str], tuple[str, str]] = {}

    async def start(a: p.StartAttempt) -> None:
        try:
            for m in manifests(a, meta, spec, image):
                await api.create(*_PLURALS[m["kind"]], ns, m)
        except kube.ApiError as exc:
            if exc.status not in (403, 422):  # not a refusal: the reconcile is retried
                raise
            refused[(a.arm, a.stage)] = refusal(exc)
            return
        created.append(a.name)

    await asyncio.gather(*(start(a) for a in started))
    status = plan.status
    if refused:  # shown in status and retried at the next reconcile (quota may free up)
        status = status.model_copy(deep=True)
        for st in status.stages:
            if (st.arm, st.name) in refused:
                st.state = s.StageState.PENDING
                st.reason, st.message = refused[(st.arm, st.name)]
        status_changed = True
    for a in plan.actions:
        if isinstance(a, p.SuspendAttempt):
            await api.patch("batch/v1", "jobs", ns, a.name, {"spec": {"suspend": a.suspend}})
        elif isinstance(a, p.StopAttempt):
            await api.delete("batch/v1", "jobs", ns, a.name)
    if status_changed:
        await api.patch_run_status(ns, meta["name"], p.status_patch(status))
    await asyncio.gather(*(api.event(run, e.reason, e.message, e.type)
                           for e in plan.of(p.Event)))
    return created
