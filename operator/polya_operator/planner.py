"""The reconcile decision, as a pure function: (PolyaRun, observed Jobs, status, now) -> plan.

No I/O happens here. ``plan()`` re-derives everything from what it is given, so an operator
restarted at any moment (or a duplicated event) reaches the same decision:

* child names are deterministic (``<run>-<arm>-<stage>-<attempt>``) and a Job that exists is
  never created again; the next attempt index is one past the highest one ever seen (in the
  Jobs or in ``status.stages[].attempts``);
* stages run in order per arm (``spec.stages_for(arm)``); arms run in parallel only when
  their pods may mount the workspace at once (``resources.parallel_arms``: a ReadWriteMany
  claim or an object store), else one arm after another (a ReadWriteOnce volume attaches to
  one node: pods elsewhere would hang in ContainerCreating with a Multi-Attach error);
* a failed attempt (``FailureTarget``) is followed by the next one only once its pods have
  terminated, so two attempts never write the workspace at once;
* a pod that cannot start (image pull, a missing Secret, unschedulable) is named in the
  stage's status message and in a Warning Event (``pod_problem``);
* a stage's failures are the attempts whose Job failed; after ``backoffLimit`` retries the
  stage and the run fail with the reason of the last failure (``BackoffLimitExceeded``,
  ``DeadlineExceeded``, ``OOMKilled``, ...). Disruptions (preemption) never fail the Job (see
  resources.py) and are only counted for events and metrics;
* ``spec.suspend`` suspends the active Jobs (``spec.suspend`` on the Job, so the attempt is
  kept and resumes from its checkpoint); Jobs admitted by Kueue (``spec.queueName``) are
  deleted instead and resuming creates the next attempt, queued again;
* ``spec.activeDeadlineSeconds`` bounds the whole run (wall clock since it started);
  ``spec.ttlSecondsAfterFinished`` deletes the Jobs that long after the run finished;
* spec changes: model, dataset, arms and storage are immutable (CEL rules in the CRD); any
  other change applies to the stages that have not started yet (a new spec ConfigMap per
  generation, ``resources.configmap``), a running attempt keeps the spec it started with.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
from collections.abc import Container
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from polya_trainer import spec as s

from . import resources as r

ACTIVE = ("Pending", "Running", "Suspended")


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class CreateJob:
    manifest: dict[str, Any]
    arm: str
    stage: str
    attempt: int


@dataclass(frozen=True)
class DeleteJob:
    name: str


@dataclass(frozen=True)
class PatchJob:
    name: str
    suspend: bool


@dataclass(frozen=True)
class CreateConfigMap:
    """The spec ConfigMap of the run's current generation; its manifest is built when first
    read (after the Jobs went out)."""

    meta: dict[str, Any] = field(repr=False)
    spec: s.PolyaRunSpec = field(repr=False)

    @functools.cached_property
    def manifest(self) -> dict[str, Any]:
        return r.configmap(self.meta, self.spec)


@dataclass(frozen=True)
class CreatePVC:
    manifest: dict[str, Any]


@dataclass(frozen=True)
class CreateService:
    manifest: dict[str, Any]


@dataclass(frozen=True)
class Event:
    reason: str
    message: str
    type: str = "Normal"  # or Warning
    arm: str | None = None
    stage: str | None = None


Action = CreateJob | DeleteJob | PatchJob | CreateConfigMap | CreatePVC | CreateService | Event


@dataclass(frozen=True)
class Transition:
    """A stage changing state (the handlers turn these into metrics)."""

    arm: str
    stage: str
    old: str
    new: str
    reason: str = ""
    seconds: float | None = None  # stage duration (finished) or time to running (started)


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    transitions: list[Transition] = field(default_factory=list)

    def of(self, kind: type) -> list[Any]:
        return [a for a in self.actions if isinstance(a, kind)]


# --------------------------------------------------------------------------- observation


@dataclass(frozen=True)
class JobInfo:
    """What the planner needs of one child Job (see ``observe_job``)."""

    name: str
    arm: str
    stage: str
    attempt: int
    phase: str  # Pending | Running | Succeeded | Failed | Suspended
    reason: str = ""
    message: str = ""
    created: str | None = None
    started: str | None = None
    finished: str | None = None
    preemptions: int = 0
    retryable: bool = True
    progress: dict[str, Any] | None = None  # the trainer's progress JSON (termination msg)


def _cond(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind and c.get("status") == "True":
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


def _cond_false(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind and c.get("status") == "False":
            return c
    return None


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
    condition (reason ``Unschedulable``, message such as "0/3 nodes are available: 3
    Insufficient nvidia.com/gpu."; kubernetes pkg/scheduler/schedule_one.go
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
        sched = _cond_false(pod, "PodScheduled")
        if sched and sched.get("reason") == "Unschedulable":  # not SchedulingGated
            return "Unschedulable", str(sched.get("message") or "")
    return None


def _problem_kind(reason: str | None) -> str | None:
    """The kind of a stuck pod's reason (the kubelet alternates ErrImagePull and
    ImagePullBackOff while it backs off: one kind, one Event); None for no problem."""
    if reason in ("ErrImagePull", "ImagePullBackOff"):
        return "image"
    if reason in STUCK_REASONS or reason in ("Unschedulable", "Terminating"):
        return reason
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


def observe_job(job: dict[str, Any], pods: list[dict[str, Any]] = ()) -> JobInfo:
    """Reduce a child Job (and its pods) to a JobInfo."""
    meta = job.get("metadata") or {}
    lab = meta.get("labels") or {}
    st = job.get("status") or {}
    pods = sorted(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "")
    preempted = [p for p in pods if _cond(p, "DisruptionTarget")]
    progress = None
    oom = False
    for pod in pods:
        term = _terminated(pod)
        if term:
            progress = parse_progress(term.get("message")) or progress
            oom = oom or term.get("reason") == "OOMKilled"
    base = dict(name=meta.get("name", ""), arm=lab.get(r.LABEL_ARM, ""),
                stage=lab.get(r.LABEL_STAGE, ""), attempt=int(lab.get(r.LABEL_ATTEMPT, 0)),
                created=meta.get("creationTimestamp"), started=st.get("startTime"),
                preemptions=len(preempted), progress=progress)
    if _cond(job, "Complete") or _cond(job, "SuccessCriteriaMet"):
        return JobInfo(phase="Succeeded", finished=st.get("completionTime"), **base)
    failed = _cond(job, "Failed")
    target = None if failed else _cond(job, "FailureTarget")
    if target and (any(_alive(p) for p in pods) or st.get("active") or st.get("terminating")):
        # The Job controller adds FailureTarget first and Failed once every pod has
        # terminated (kubernetes pkg/controller/job/job_controller.go, syncJob: the
        # finished condition waits for pods to terminate; status.terminating counts them).
        # The next attempt would write the same workspace: wait.
        return JobInfo(phase="Pending", reason="Terminating",
                       message="the attempt failed; waiting for its pods to terminate",
                       **base)
    failed = failed or target
    if failed:
        reason = failed.get("reason") or "Failed"
        message = failed.get("message") or ""
        retryable = True
        if oom:
            reason = "OOMKilled"
        elif reason == "PodFailurePolicy":
            reason, retryable = "InvalidConfig", False
        elif progress and progress.get("reason") == "InvalidConfig":
            # A multi-process stage: the launcher (torch elastic) exits 1 whatever its
            # workers' codes, so exit code 2 never reaches podFailurePolicy; rank 0's
            # termination message carries the verdict instead.
            reason, retryable = "InvalidConfig", False
            message = str(progress.get("message") or message)
        elif progress and progress.get("message"):
            message = str(progress["message"])
        return JobInfo(phase="Failed", reason=reason, message=message, retryable=retryable,
                       finished=failed.get("lastTransitionTime"), **base)
    if (job.get("spec") or {}).get("suspend"):
        return JobInfo(phase="Suspended", reason="JobSuspended", **base)
    running = any((p.get("status") or {}).get("phase") == "Running" for p in pods)
    if running or (st.get("ready") or 0) > 0:
        return JobInfo(phase="Running", **base)
    problem = pod_problem(pods)
    if problem:
        return JobInfo(phase="Pending", reason=problem[0], message=problem[1][:2048], **base)
    return JobInfo(phase="Pending", reason="PodPending", **base)


# --------------------------------------------------------------------------- helpers


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _seconds(a: str | None, b: str | None) -> float | None:
    ta, tb = parse_time(a), parse_time(b)
    return None if ta is None or tb is None else max(0.0, (tb - ta).total_seconds())


def _condition(old: dict[str, dict[str, Any]], kind: str, status: str, reason: str,
               message: str, now: str, generation: int | None) -> dict[str, Any]:
    prev = old.get(kind)
    changed = prev is None or prev.get("status") != status
    cond = {"type": kind, "status": status, "reason": reason, "message": message[:32768],
            "lastTransitionTime": now if changed else prev.get("lastTransitionTime", now)}
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def _apply_progress(st: dict[str, Any], prog: dict[str, Any] | None) -> None:
    if not prog:
        return
    with contextlib.suppress(TypeError, ValueError):
        st["progress"] = round(min(100.0, max(0.0, float(prog.get("progress") or 0.0))), 2)
    eta = prog.get("etaSeconds")
    if isinstance(eta, int | float) and eta >= 0:
        st["etaSeconds"] = float(eta)
    metrics = {k: float(v) for k, v in (prog.get("metrics") or {}).items()
               if isinstance(v, int | float) and not isinstance(v, bool)}
    if metrics:
        st["metrics"] = {**st.get("metrics", {}), **metrics}
    outputs = {k: str(v) for k, v in (prog.get("outputs") or {}).items()}
    if outputs:
        st["outputs"] = outputs


def _invalid(meta: dict[str, Any], old: dict[str, Any], exc: s.SpecError, now: str,
             ) -> Plan:
    gen = meta.get("generation")
    message = "; ".join(f"{p}: {m}" for p, m in exc.errors)[:4096]
    conds = {c.get("type"): c for c in old.get("conditions") or []}
    status = {
        "conditions": [
            _condition(conds, "Running", "False", "InvalidSpec", "", now, gen),
            _condition(conds, "Succeeded", "False", "InvalidSpec", message, now, gen),
            _condition(conds, "Failed", "True", "InvalidSpec", message, now, gen),
            _condition(conds, "Suspended", "False", "InvalidSpec", "", now, gen),
        ],
        "stages": old.get("stages") or [], "currentStage": None,
        "progress": float(old.get("progress") or 0.0), "observedGeneration": gen,
        "startTime": old.get("startTime"), "completionTime": old.get("completionTime") or now,
    }
    plan = Plan(status=status)
    prev = conds.get("Failed") or {}
    if not (prev.get("reason") == "InvalidSpec" and prev.get("message") == message):
        plan.actions.append(Event("InvalidSpec", message, "Warning"))
    return plan


# --------------------------------------------------------------------------- the planner


def parse(raw: Any) -> s.PolyaRunSpec | s.SpecError:
    """The validated spec with the operator's defaults applied, or the error naming the field."""
    try:
        return r.with_defaults(s.parse_spec(raw))
    except s.SpecError as exc:
        return exc


def name_error(name: str) -> str | None:
    """Why a run name cannot name its children (Services, pod hostnames), or None.

    The API server checks a custom resource's name as a DNS subdomain only
    (apimachinery pkg/api/validation NameIsDNSSubdomain); a Service name must be an RFC 1035
    label (pkg/apis/core/validation ValidateServiceName = IsDNS1035Label).
    """
    if len(name) > 40:
        return "must be at most 40 characters (child Job names append arm, stage, attempt)"
    if not re.fullmatch(s.DNS_1035, name):
        return ("must be an RFC 1035 label (lower-case letters, digits and '-', starting "
                "with a letter, no dots): it names the run's Services and pod hostnames")
    return None


def plan(run: dict[str, Any], jobs: list[JobInfo], now: datetime,
         live: dict[str, dict[str, Any]] | None = None, image: str | None = None,
         known: Container[str] = frozenset(),
         parsed: s.PolyaRunSpec | s.SpecError | None = None) -> Plan:
    """Decide the next actions and the new status of one PolyaRun.

    ``run`` is the object (metadata, spec, status); ``jobs`` its observed child Jobs;
    ``live`` maps a running Job's name to the progress its pod serves; ``image`` is the
    operator's default trainer image; ``known`` names Jobs this process created moments
    ago whose watch events may not have arrived yet (they are waited for, not recreated);
    ``parsed`` is ``parse_spec(run["spec"])`` (or its SpecError) when the caller cached it.
    """
    meta = run.get("metadata") or {}
    old = dict(run.get("status") or {})
    gen = meta.get("generation")
    tnow = iso(now)
    live = live or {}
    if parsed is None:
        parsed = parse(run.get("spec"))
    bad_name = name_error(meta.get("name") or "")
    if bad_name:  # stored before the CRD rule existed, or the rule was bypassed
        spec_errors = parsed.errors if isinstance(parsed, s.SpecError) else []
        parsed = s.SpecError([*spec_errors, ("metadata.name", bad_name)])
    if isinstance(parsed, s.SpecError):
        return _invalid(meta, old, parsed, tnow)
    spec = parsed

    conds = {c.get("type"): c for c in old.get("conditions") or []}
    finished = (conds.get("Succeeded", {}).get("status") in ("True", "False")
                and conds.get("Succeeded", {}).get("reason") != "InvalidSpec")
    if finished:
        return _finished(run, spec, jobs, now, old)

    out = Plan()
    by_stage: dict[tuple[str, str], list[JobInfo]] = {}
    for j in jobs:
        by_stage.setdefault((j.arm, j.stage), []).append(j)
    for js in by_stage.values():
        js.sort(key=lambda j: j.attempt)
    old_stages = {(x.get("arm"), x.get("name")): x for x in old.get("stages") or []}
    # The status is written after the ConfigMap and claim exist, so a run without startTime
    # may lack them even when its first Job exists (an operator stopped in between): they
    # are created again (an existing one is fine).
    started = bool(old.get("startTime"))
    start_time = old.get("startTime") or tnow
    kueue = bool(spec.queue_name)

    # The run's own deadline.
    deadline_hit = False
    if spec.active_deadline_seconds and old.get("startTime"):
        elapsed = _seconds(old["startTime"], tnow) or 0.0
        deadline_hit = elapsed >= spec.active_deadline_seconds

    if not started:
        out.actions.append(CreateConfigMap(meta, spec))
        if r.creates_claim(spec):
            out.actions.append(CreatePVC(r.pvc(meta, spec)))
    elif gen is not None and old.get("observedGeneration") not in (None, gen):
        out.actions.append(CreateConfigMap(meta, spec))  # a new snapshot; see configmap()

    stages: list[dict[str, Any]] = []
    failure: tuple[str, str] | None = None  # (reason, message)
    parallel = r.parallel_arms(spec)
    for arm in spec.arms:
        # An earlier stage of this arm has not succeeded (or, when the arms take turns on a
        # ReadWriteOnce workspace, an earlier arm has not finished).
        blocked = not parallel and not all(x["state"] in ("Succeeded", "Skipped")
                                           for x in stages)
        for stage in spec.stages_for(arm):
            cfg: s.StageBase = getattr(spec.stages, stage)
            prev = old_stages.get((arm, stage), {})
            st: dict[str, Any] = {"name": stage, "arm": arm,
                                  "state": prev.get("state", "Pending"),
                                  "attempts": int(prev.get("attempts", 0)),
                                  "progress": float(prev.get("progress", 0.0)),
                                  "metrics": dict(prev.get("metrics") or {}),
                                  "outputs": dict(prev.get("outputs") or {})}
            for key in ("jobName", "startTime", "completionTime", "etaSeconds", "reason",
                        "message"):
                if prev.get(key) is not None:
                    st[key] = prev[key]
            stages.append(st)
            old_state = st["state"]
            mine = by_stage.get((arm, stage), [])
            if mine:
                st["attempts"] = max(st["attempts"], mine[-1].attempt + 1)
            if blocked or old_state in ("Succeeded", "Skipped"):
                blocked = blocked or old_state not in ("Succeeded", "Skipped")
                if old_state == "Succeeded" and not st["outputs"] and mine and \
                        mine[-1].progress:  # the pod's watch event came after the Job's
                    _apply_progress(st, mine[-1].progress)
                    st["progress"] = 100.0
                continue
            blocked = True
            # Preemptions (disruptions): counted for events/metrics, never as failures.
            pre = sum(j.preemptions for j in mine)
            if pre > st["metrics"].get("preemptions", 0):
                out.actions.append(Event("Preempted", f"{arm}/{stage}: pod disrupted "
                                         f"({pre} so far); the Job starts a new pod",
                                         "Warning", arm, stage))
                st["metrics"]["preemptions"] = float(pre)
            latest = mine[-1] if mine else None
            failures = [j for j in mine if j.phase == "Failed"]

            def start_next(reason: str, message: str, *, st=st, arm=arm, stage=stage,
                           cfg=cfg, mine=mine) -> None:
                attempt = max(st["attempts"], (mine[-1].attempt + 1) if mine else 0)
                manifest = r.job(meta, spec, arm, stage, attempt, image=image)
                if cfg.resources.nodes > 1:
                    out.actions.append(CreateService(
                        r.service(meta, manifest["metadata"]["name"], arm, stage)))
                out.actions.append(CreateJob(manifest, arm, stage, attempt))
                st.update(state="Pending", attempts=attempt + 1,
                          jobName=manifest["metadata"]["name"], reason=reason, message=message)
                st.setdefault("startTime", tnow)
                st.pop("completionTime", None)

            recorded = st.get("jobName")
            seen = {j.name for j in mine}
            if deadline_hit:
                if latest and latest.phase in ACTIVE:
                    out.actions.append(DeleteJob(latest.name))
                st.update(state="Failed", reason="DeadlineExceeded",
                          message="the run exceeded spec.activeDeadlineSeconds",
                          completionTime=tnow)
                failure = failure or ("DeadlineExceeded", f"{arm}/{stage}: the run exceeded "
                                      f"spec.activeDeadlineSeconds="
                                      f"{spec.active_deadline_seconds}")
            elif recorded and old_state in ACTIVE and recorded not in seen:
                # The recorded attempt's Job is not observed: just created (its watch event
                # has not arrived yet), deleted for a Kueue suspension, or deleted by hand.
                if recorded in known:
                    pass
                elif spec.suspend:
                    st.update(state="Suspended", reason="RunSuspended",
                              message="spec.suspend is true")
                else:
                    attempt = int(recorded.rsplit("-", 1)[1])
                    manifest = r.job(meta, spec, arm, stage, attempt, image=image)
                    if cfg.resources.nodes > 1:
                        out.actions.append(CreateService(r.service(meta, recorded, arm, stage)))
                    out.actions.append(CreateJob(manifest, arm, stage, attempt))
                    st.update(state="Pending", reason="JobRecreated",
                              message=f"Job {recorded} was not found; created again")
            elif latest is None:
                if spec.suspend:
                    st.update(state="Suspended", reason="RunSuspended",
                              message="spec.suspend is true")
                else:
                    start_next("AttemptCreated", "")
                    out.actions.append(Event("StageStarted", f"{arm}/{stage}: Job "
                                             f"{st['jobName']} created", "Normal", arm, stage))
            elif latest.phase == "Succeeded":
                st.update(state="Succeeded", reason="JobComplete", message="", jobName=latest.name,
                          completionTime=latest.finished or tnow, progress=100.0,
                          etaSeconds=0.0)
                _apply_progress(st, latest.progress)
                st["progress"] = 100.0
                out.actions.append(Event("StageSucceeded", f"{arm}/{stage} succeeded "
                                         f"(Job {latest.name})", "Normal", arm, stage))
                blocked = False
            elif latest.phase == "Failed":
                st["jobName"] = latest.name  # also when the status write was lost (restart)
                _apply_progress(st, latest.progress)
                retries_left = cfg.backoff_limit - (len(failures) - 1)
                if latest.retryable and retries_left > 0 and not spec.suspend:
                    msg = (f"{arm}/{stage}: attempt {latest.attempt} failed ({latest.reason}); "
                           f"retry {len(failures)} of {cfg.backoff_limit}")
                    start_next(latest.reason, msg)
                    out.actions.append(Event("StageRetrying", msg, "Warning", arm, stage))
                elif latest.retryable and retries_left > 0:
                    st.update(state="Suspended", reason="RunSuspended",
                              message="spec.suspend is true")
                else:
                    reason = latest.reason
                    detail = (f"{arm}/{stage}: attempt {latest.attempt} failed "
                              f"({latest.reason}: {latest.message or 'no message'}); "
                              f"{len(failures)} failure(s), backoffLimit {cfg.backoff_limit}")
                    st.update(state="Failed", reason=reason, message=detail[:4096],
                              completionTime=latest.finished or tnow)
                    out.actions.append(Event("StageFailed", detail, "Warning", arm, stage))
                    failure = failure or (reason, detail)
            else:  # an active Job: Pending, Running or Suspended
                st["jobName"] = latest.name
                _apply_progress(st, live.get(latest.name))
                if spec.suspend and latest.phase != "Suspended":
                    out.actions.append(DeleteJob(latest.name) if kueue
                                       else PatchJob(latest.name, True))
                    st.update(state="Suspended", reason="RunSuspended",
                              message="spec.suspend is true")
                elif not spec.suspend and latest.phase == "Suspended" and not kueue:
                    out.actions.append(PatchJob(latest.name, False))
                    st.update(state="Pending", reason="Resumed", message="")
                elif latest.phase == "Suspended":
                    st.update(state="Suspended",
                              reason="RunSuspended" if spec.suspend else "QueuedInKueue",
                              message="" if spec.suspend else "waiting for Kueue admission")
                elif latest.phase == "Pending" and latest.reason not in ("PodPending", ""):
                    # Stuck (image, Secret, scheduling) or a failed attempt's pods still
                    # terminating: say why, once per new reason or message.
                    if latest.reason != "Terminating" and \
                            _problem_kind(prev.get("reason")) != _problem_kind(latest.reason):
                        out.actions.append(Event(
                            latest.reason, f"{arm}/{stage}: Job {latest.name} cannot start: "
                            f"{latest.message}", "Warning", arm, stage))
                    st.update(state="Pending", reason=latest.reason, message=latest.message)
                elif latest.phase == "Pending" and old_state == "Pending" and \
                        prev.get("jobName") == latest.name and \
                        _problem_kind(prev.get("reason")) is None:
                    pass  # still waiting for its pod: keep why it was created (one patch less)
                else:
                    st.update(state=latest.phase, reason=latest.reason or "PodRunning",
                              message="")
            if st["state"] != old_state:
                seconds = None
                if st["state"] in ("Succeeded", "Failed"):
                    seconds = _seconds(st.get("startTime"), st.get("completionTime"))
                elif st["state"] == "Running" and latest is not None:
                    seconds = _seconds(latest.created, tnow)
                out.transitions.append(Transition(arm, stage, old_state, st["state"],
                                                  st.get("reason") or "", seconds))
            if st["state"] == "Succeeded":
                continue
            if failure:
                break

    # A failed stage fails the run: stop the other arms' active Jobs.
    if failure:
        for st in stages:
            if st["state"] in ACTIVE and st.get("jobName"):
                if not any(isinstance(a, DeleteJob) and a.name == st["jobName"]
                           for a in out.actions):
                    active = [j for j in jobs if j.name == st["jobName"] and j.phase in ACTIVE]
                    if active:
                        out.actions.append(DeleteJob(st["jobName"]))
                st.update(state="Failed", reason="RunFailed",
                          message="stopped because another stage failed", completionTime=tnow)
        # Created-then-cancelled Jobs are not created at all.
        out.actions = [a for a in out.actions if not isinstance(a, CreateJob)]

    out.status = _status(spec, meta, old, stages, conds, failure, start_time, tnow,
                         suspended=spec.suspend and not failure)
    if failure:
        out.actions.append(Event("RunFailed", failure[1], "Warning"))
    elif _cond_status(out.status, "Succeeded") == "True":
        out.actions.append(Event("RunSucceeded", "all stages succeeded", "Normal"))
    return out


def completed_condition(stage: str) -> str:
    """``GenerateCompleted``, ..., ``RLCompleted`` (as the local runner names them)."""
    return ("RL" if stage == "rl" else stage.capitalize()) + "Completed"


def _cond_status(status: dict[str, Any], kind: str) -> str | None:
    for c in status.get("conditions") or []:
        if c["type"] == kind:
            return c["status"]
    return None


def _status(spec: s.PolyaRunSpec, meta: dict[str, Any], old: dict[str, Any],
            stages: list[dict[str, Any]], conds: dict[str, dict[str, Any]],
            failure: tuple[str, str] | None, start_time: str, now: str,
            suspended: bool) -> dict[str, Any]:
    gen = meta.get("generation")
    active = [f"{x['arm']}/{x['name']}" for x in stages
              if x["state"] == "Suspended" or (x["state"] in ACTIVE and x.get("jobName"))]
    running = [f"{x['arm']}/{x['name']}" for x in stages if x["state"] in ("Pending",
                                                                            "Running")
               and x.get("jobName")]
    done = bool(stages) and all(x["state"] in ("Succeeded", "Skipped") for x in stages)
    progress = round(sum(100.0 if x["state"] == "Succeeded" else x.get("progress", 0.0)
                         for x in stages) / max(1, len(stages)), 2)
    current = ",".join(active) or None
    cs: list[dict[str, Any]] = []
    if failure:
        reason, message = failure
        cs += [_condition(conds, "Running", "False", reason, "", now, gen),
               _condition(conds, "Succeeded", "False", reason, message, now, gen),
               _condition(conds, "Failed", "True", reason, message, now, gen)]
    elif done:
        cs += [_condition(conds, "Running", "False", "Completed", "", now, gen),
               _condition(conds, "Succeeded", "True", "Completed",
                          "all stages succeeded", now, gen),
               _condition(conds, "Failed", "False", "Completed", "", now, gen)]
    else:
        reason = "Suspended" if suspended else ("StageRunning" if running else "Pending")
        cs += [_condition(conds, "Running", "True" if running and not suspended else "False",
                          reason, ",".join(running), now, gen),
               _condition(conds, "Succeeded", "Unknown", reason,
                          f"running {current}" if current else "", now, gen),
               _condition(conds, "Failed", "False", reason, "", now, gen)]
    cs.append(_condition(conds, "Suspended", "True" if suspended else "False",
                         "RunSuspended" if suspended else "NotSuspended", "", now, gen))
    for stage in s.STAGES:
        mine = [x for x in stages if x["name"] == stage]
        if not mine:
            continue
        ok = all(x["state"] in ("Succeeded", "Skipped") for x in mine)
        failed = any(x["state"] == "Failed" for x in mine)
        reason = "Succeeded" if ok else ("Failed" if failed else
                                         ("Running" if any(x["state"] in ACTIVE
                                                           for x in mine) else "Pending"))
        cs.append(_condition(conds, completed_condition(stage),
                             "True" if ok else "False", reason,
                             ", ".join(f"{x['arm']}: {x['state']}" for x in mine), now, gen))
    finished = failure is not None or done
    return {"conditions": cs, "stages": stages, "currentStage": current,
            "progress": 100.0 if done else progress, "observedGeneration": gen,
            "startTime": start_time,
            "completionTime": (old.get("completionTime") or now) if finished else None,
            "report": old.get("report") or _report(stages) if done else old.get("report")}


def _report(stages: list[dict[str, Any]]) -> str | None:
    for st in stages:
        if st["name"] == "evaluate":
            for key in ("report", "report_md", "reportPath"):
                if st.get("outputs", {}).get(key):
                    return st["outputs"][key]
    return None


def _finished(run: dict[str, Any], spec: s.PolyaRunSpec, jobs: list[JobInfo], now: datetime,
              old: dict[str, Any]) -> Plan:
    """A finished run only waits for its TTL, then deletes its Jobs (and takes in outputs
    whose pod event came after the Job's: the two watches are not ordered)."""
    out = Plan(status=_late_outputs(old, jobs) or old)
    ttl = spec.ttl_seconds_after_finished
    done_at = parse_time(old.get("completionTime"))
    if ttl is not None and done_at is not None and (now - done_at).total_seconds() >= ttl:
        out.actions += [DeleteJob(j.name) for j in jobs]
    else:  # a finished run leaves nothing running
        out.actions += [DeleteJob(j.name) for j in jobs if j.phase in ("Pending", "Running")]
    return out


def _late_outputs(old: dict[str, Any], jobs: list[JobInfo]) -> dict[str, Any] | None:
    """The status with the outputs of succeeded stages that had none yet, if any arrived."""
    latest: dict[tuple[str, str], JobInfo] = {}
    for j in sorted(jobs, key=lambda j: j.attempt):
        latest[(j.arm, j.stage)] = j
    stages, changed = [], False
    for st in old.get("stages") or []:
        job = latest.get((st.get("arm"), st.get("name")))
        if st.get("state") == "Succeeded" and not st.get("outputs") and job is not None \
                and job.progress and job.progress.get("outputs"):
            st = {**st, "metrics": dict(st.get("metrics") or {})}
            _apply_progress(st, job.progress)
            st["progress"] = 100.0
            changed = True
        stages.append(st)
    if not changed:
        return None
    new = {**old, "stages": stages}
    if not new.get("report") and all(x.get("state") in ("Succeeded", "Skipped")
                                     for x in stages):
        new["report"] = _report(stages)
    return new


def next_wakeup(run: dict[str, Any], now: datetime) -> float | None:
    """Seconds until a time-based decision (run deadline, TTL) is due, if any."""
    spec = run.get("spec") or {}
    status = run.get("status") or {}
    waits = []
    start = parse_time(status.get("startTime"))
    if spec.get("activeDeadlineSeconds") and start and not status.get("completionTime"):
        waits.append(spec["activeDeadlineSeconds"] - (now - start).total_seconds())
    done = parse_time(status.get("completionTime"))
    if spec.get("ttlSecondsAfterFinished") is not None and done:
        waits.append(spec["ttlSecondsAfterFinished"] - (now - done).total_seconds())
    return max(0.0, min(waits)) if waits else None
