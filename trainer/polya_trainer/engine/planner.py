"""The one planner: (run, observed attempts, status, now) -> (actions, new PolyaRunStatus).

Pure: no I/O, no Kubernetes, no processes. Two executors carry out its actions and feed it
their observations: the operator (``polya_operator.executor``: Jobs, Services, ConfigMaps,
claims, Events) and the local runner (``engine/local.py``: child processes). ``plan()``
re-derives everything from what it is given, so an executor restarted at any moment (or a
duplicated event) reaches the same decision.

Rules (the same for both executors):

* child names and labels are deterministic (``<run>-<arm>-<stage>-<attempt>``, attempt from
  0); a child that exists is never started again; the next attempt index is one past the
  highest one ever seen (in the observed attempts or in ``status.stages[].attempts``);
* stages run in order per arm (``spec.stages_for(arm)``); at most ``Policy.max_parallel_arms``
  arms are in progress at once (None: all; the operator passes 1 when the workspace attaches
  to one node only, the local runner 1 by default);
* a stage's failures are its attempts that failed; after ``backoffLimit`` retries the stage
  and the run fail with the reason of the last failure. An attempt that may not be retried
  (``retryable=False``: exit code 2, InvalidConfig) fails the stage at once. Disruptions
  (preemption) are reported by the executor in ``Attempt.preemptions`` and only counted;
* ``spec.suspend`` suspends the active attempts (the attempt is kept and resumes from its
  checkpoint); with Kueue (``spec.queueName``) they are stopped instead (Kueue owns the
  Job's ``spec.suspend``) and resuming starts the next attempt, queued again, once the
  stopped one is gone: an executor reports an attempt whose processes are still going as
  Pending with reason ``Terminating``, and no attempt of that stage starts meanwhile;
* ``spec.activeDeadlineSeconds`` bounds the whole run (wall clock since it started);
  ``spec.ttlSecondsAfterFinished`` stops (deletes) the attempts that long after the end.

``plan()`` reads as four steps: observe (``_observe``), decide per arm and stage
(``_decide_stage``), derive conditions (``_derive``), finish (``_finish``). Conditions are
read and written only through ``condition`` and ``set_condition`` below.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from polya_trainer import spec as s

ACTIVE = ("Pending", "Running", "Suspended")
DONE = ("Succeeded", "Skipped")
LABEL_RUN = "polya.dev/run"
LABEL_ARM = "polya.dev/arm"
LABEL_STAGE = "polya.dev/stage"
LABEL_ATTEMPT = "polya.dev/attempt"
# A sharded stage's Indexed Job fails with these once an index has spent its own budget
# (backoffLimitPerIndex = the stage's backoffLimit); kubernetes pkg/controller/job/
# job_controller.go, syncJob: MaxFailedIndexesExceeded when more than maxFailedIndexes
# failed, FailedIndexes when every index finished and some failed. Such an attempt is not
# retried as a whole: a new Job would give each failed index backoffLimit + 1 tries again.
INDEX_BUDGET_SPENT = frozenset({"FailedIndexes", "MaxFailedIndexesExceeded"})
# An attempt whose pods (processes) are still terminating: a failed Job's, or a deleted one's.
TERMINATING = "Terminating"
# The stage reasons after which a recorded attempt that is no longer observed was stopped
# on purpose (and seen going): its successor is a new attempt, not the same one again.
STOPPED = frozenset({"RunSuspended", TERMINATING})


# --------------------------------------------------------------------------- names


def child_name(run: str, arm: str, stage: str, attempt: int) -> str:
    """The name of an attempt: its Job (operator) or its log and status entry (local)."""
    return f"{run}-{arm}-{stage}-{attempt}"


def child_labels(run: str, arm: str, stage: str, attempt: int) -> dict[str, str]:
    return {LABEL_RUN: run, LABEL_ARM: arm, LABEL_STAGE: stage, LABEL_ATTEMPT: str(attempt)}


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


# --------------------------------------------------------------------------- conditions


def completed_condition(stage: str) -> str:
    """``GenerateCompleted``, ..., ``RLCompleted``: the stage finished for every arm."""
    return ("RL" if stage == "rl" else stage.capitalize()) + "Completed"


def condition(status: s.PolyaRunStatus | None, kind: str) -> s.Condition | None:
    """The condition ``kind`` of a status, or None."""
    for c in (status.conditions if status is not None else []):
        if c.type == kind:
            return c
    return None


def set_condition(status: s.PolyaRunStatus, old: s.PolyaRunStatus, kind: str, value: str,
                  reason: str, message: str, now: datetime, generation: int | None) -> None:
    """Set (or add) a condition; lastTransitionTime moves only when the value flips."""
    prev = condition(old, kind)
    moved = prev is None or prev.status != value or prev.last_transition_time is None
    cond = s.Condition(type=kind, status=value, reason=reason, message=message[:32768],
                       last_transition_time=now if moved else prev.last_transition_time,
                       observed_generation=generation)
    status.conditions = [c for c in status.conditions if c.type != kind] + [cond]


def run_state(status: s.PolyaRunStatus | None) -> str:
    """Succeeded, Failed, Suspended, Running or Pending, from the conditions."""
    for kind in ("Succeeded", "Failed", "Suspended", "Running"):
        c = condition(status, kind)
        if c is not None and c.status == "True":
            return kind
    return "Pending"


def finished(status: s.PolyaRunStatus | None) -> bool:
    c = condition(status, "Succeeded")
    return c is not None and c.status in ("True", "False") and c.reason != "InvalidSpec"


# --------------------------------------------------------------------------- observation


@dataclass(frozen=True)
class Attempt:
    """One observed attempt of an (arm, stage), as an executor saw it."""

    name: str
    arm: str
    stage: str
    attempt: int
    phase: str  # Pending | Running | Succeeded | Failed | Suspended
    reason: str = ""
    message: str = ""
    created: str | None = None  # ISO times
    started: str | None = None
    finished: str | None = None
    preemptions: int = 0
    retryable: bool = True
    progress: dict[str, Any] | None = None  # the trainer's final progress JSON


@dataclass(frozen=True)
class Policy:
    """How the executor lets runs use it (not part of the spec)."""

    max_parallel_arms: int | None = None  # None: every arm at once


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class StartAttempt:
    """Start attempt ``attempt`` of (arm, stage) under ``name`` (operator: a Job, and its
    headless Service when ``nodes > 1``; local: a child process)."""

    arm: str
    stage: str
    attempt: int
    name: str
    nodes: int = 1


@dataclass(frozen=True)
class StopAttempt:
    """Stop and remove an attempt (operator: delete the Job; local: kill the process)."""

    name: str


@dataclass(frozen=True)
class SuspendAttempt:
    """Suspend (True) or resume (False) an attempt, keeping it (operator: the Job's
    spec.suspend; local: SIGTERM to checkpoint, and the same attempt started again)."""

    name: str
    suspend: bool


@dataclass(frozen=True)
class SnapshotSpec:
    """Keep the spec of this generation for the attempts started from now on (operator: an
    immutable ConfigMap per generation)."""

    generation: int | None


@dataclass(frozen=True)
class PrepareWorkspace:
    """Make sure the run's workspace exists (operator: the claim, when it creates one)."""


@dataclass(frozen=True)
class Event:
    reason: str
    message: str
    type: str = "Normal"  # or Warning
    arm: str | None = None
    stage: str | None = None


Action = StartAttempt | StopAttempt | SuspendAttempt | SnapshotSpec | PrepareWorkspace | Event


@dataclass(frozen=True)
class Transition:
    """A stage changing state (executors turn these into metrics or lines)."""

    arm: str
    stage: str
    old: str
    new: str
    reason: str = ""
    seconds: float | None = None  # stage duration (finished) or time to running (started)


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    status: s.PolyaRunStatus = field(default_factory=s.PolyaRunStatus)
    transitions: list[Transition] = field(default_factory=list)

    def of(self, kind: type) -> list[Any]:
        return [a for a in self.actions if isinstance(a, kind)]


# --------------------------------------------------------------------------- helpers


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | datetime | None) -> datetime | None:
    if isinstance(text, datetime):
        return text
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _seconds(a: str | datetime | None, b: str | datetime | None) -> float | None:
    ta, tb = parse_time(a), parse_time(b)
    return None if ta is None or tb is None else max(0.0, (tb - ta).total_seconds())


def as_status(raw: s.PolyaRunStatus | Mapping[str, Any] | None) -> s.PolyaRunStatus:
    if isinstance(raw, s.PolyaRunStatus):
        return raw
    try:
        return s.PolyaRunStatus.model_validate(dict(raw or {}))
    except ValueError:  # a hand-edited status: start over (children are observed anyway)
        return s.PolyaRunStatus()


def apply_progress(st: s.StageStatus, prog: Mapping[str, Any] | None) -> None:
    """Copy the trainer's progress JSON (live or final) into a stage entry."""
    if not prog:
        return
    with contextlib.suppress(TypeError, ValueError):
        st.progress = round(min(100.0, max(0.0, float(prog.get("progress") or 0.0))), 2)
    eta = prog.get("etaSeconds")
    if isinstance(eta, int | float) and not isinstance(eta, bool) and eta >= 0:
        st.eta_seconds = float(eta)
    metrics = {k: float(v) for k, v in (prog.get("metrics") or {}).items()
               if isinstance(v, int | float) and not isinstance(v, bool)}
    if metrics:
        st.metrics = {**st.metrics, **metrics}
    outputs = {k: str(v) for k, v in (prog.get("outputs") or {}).items()}
    if outputs:
        st.outputs = outputs


# --------------------------------------------------------------------------- the planner


@dataclass
class _Ctx:
    """What ``_observe`` hands the later steps."""

    meta: Mapping[str, Any]
    spec: s.PolyaRunSpec
    old: s.PolyaRunStatus
    now: datetime
    policy: Policy
    live: Mapping[str, Mapping[str, Any]]
    known: Container[str]
    by_stage: dict[tuple[str, str], list[Attempt]]
    deadline_hit: bool
    out: Plan = field(default_factory=Plan)
    failure: tuple[str, str] | None = None  # (reason, message)

    @property
    def generation(self) -> int | None:
        return self.meta.get("generation")


def plan(run: Mapping[str, Any], attempts: list[Attempt], now: datetime, *,
         policy: Policy = Policy(), live: Mapping[str, Mapping[str, Any]] | None = None,
         known: Container[str] = frozenset(),
         parsed: s.PolyaRunSpec | s.SpecError | None = None) -> Plan:
    """Decide the next actions and the new status of one run.

    ``run`` holds ``metadata`` (name, generation), ``spec`` and ``status`` (a dict or a
    PolyaRunStatus); ``attempts`` are its observed children; ``live`` maps a running
    attempt's name to the progress it serves; ``known`` names attempts the executor started
    moments ago that it cannot observe yet (waited for, not started again); ``parsed`` is
    the validated spec (the executor may apply its own defaults), else parsed here.
    """
    old = as_status(run.get("status"))
    ctx = _observe(run, attempts, old, now, policy, live or {}, known, parsed)
    if isinstance(ctx, Plan):
        return ctx  # an invalid spec
    if finished(old):
        return _finished_run(ctx, attempts)
    stages: list[s.StageStatus] = []
    in_progress, limit = 0, ctx.policy.max_parallel_arms
    for arm in ctx.spec.arms:
        # A stage waits while an earlier stage of its arm has not succeeded, or while
        # max_parallel_arms earlier arms are still in progress.
        arm_blocked = blocked = limit is not None and in_progress >= limit
        for stage in ctx.spec.stages_for(arm):
            stages.append(_decide_stage(ctx, arm, stage, blocked))
            blocked = blocked or stages[-1].state not in DONE
        in_progress += blocked and not arm_blocked
    _derive(ctx, stages)
    return _finish(ctx)


def parse(raw: Any) -> s.PolyaRunSpec | s.SpecError:
    try:
        return s.parse_spec(raw)
    except s.SpecError as exc:
        return exc


# ---- step 1: observe


def _observe(run: Mapping[str, Any], attempts: list[Attempt], old: s.PolyaRunStatus,
             now: datetime, policy: Policy, live: Mapping[str, Mapping[str, Any]],
             known: Container[str], parsed: s.PolyaRunSpec | s.SpecError | None,
             ) -> _Ctx | Plan:
    meta = run.get("metadata") or {}
    if parsed is None:
        parsed = parse(run.get("spec"))
    bad_name = name_error(meta.get("name") or "")
    if bad_name:  # stored before the CRD rule existed, or the rule was bypassed
        errors = parsed.errors if isinstance(parsed, s.SpecError) else []
        parsed = s.SpecError([*errors, ("metadata.name", bad_name)])
    if isinstance(parsed, s.SpecError):
        return _invalid(meta, old, parsed, now)
    by_stage: dict[tuple[str, str], list[Attempt]] = {}
    for a in sorted(attempts, key=lambda a: a.attempt):
        by_stage.setdefault((a.arm, a.stage), []).append(a)
    deadline_hit = False
    if parsed.active_deadline_seconds and old.start_time:
        deadline_hit = (_seconds(old.start_time, now) or 0.0) >= parsed.active_deadline_seconds
    ctx = _Ctx(meta=meta, spec=parsed, old=old, now=now, policy=policy, live=live,
               known=known, by_stage=by_stage, deadline_hit=deadline_hit)
    gen = ctx.generation
    # The status is written after the spec snapshot and workspace exist, so a run without
    # startTime may lack them even when its first attempt exists: prepared again (an
    # existing one is fine).
    if not old.start_time:
        ctx.out.actions.append(SnapshotSpec(gen))
        ctx.out.actions.append(PrepareWorkspace())
    elif gen is not None and old.observed_generation not in (None, gen):
        ctx.out.actions.append(SnapshotSpec(gen))  # the spec changed: a new snapshot
    return ctx


# ---- step 2: decide per arm and stage


def _entry(ctx: _Ctx, arm: str, stage: str) -> s.StageStatus:
    for x in ctx.old.stages:
        if x.arm == arm and x.name == stage:
            return x.model_copy(deep=True)
    return s.StageStatus(name=stage, arm=arm)


def _decide_stage(ctx: _Ctx, arm: str, stage: str, blocked: bool) -> s.StageStatus:
    st = _entry(ctx, arm, stage)
    old_state = str(st.state)
    mine = ctx.by_stage.get((arm, stage), [])
    if mine:
        st.attempts = max(st.attempts, mine[-1].attempt + 1)
    latest = mine[-1] if mine else None
    if old_state in DONE:
        if old_state == "Succeeded" and not st.outputs and latest and latest.progress:
            apply_progress(st, latest.progress)  # its final progress came late
            st.progress = 100.0
        return st
    if blocked or ctx.failure:
        return st
    out = ctx.out
    # Preemptions (disruptions): counted for events and metrics, never as failures.
    pre = sum(a.preemptions for a in mine)
    if pre > st.metrics.get("preemptions", 0):
        out.actions.append(Event("Preempted", f"{arm}/{stage}: pod disrupted ({pre} so far); "
                                 "the attempt goes on in a new pod", "Warning", arm, stage))
        st.metrics["preemptions"] = float(pre)
    seen = {a.name for a in mine}
    if ctx.deadline_hit:
        if latest and latest.phase in ACTIVE:
            out.actions.append(StopAttempt(latest.name))
        _set(st, "Failed", "DeadlineExceeded", "the run exceeded spec.activeDeadlineSeconds")
        st.completion_time = ctx.now
        ctx.failure = ctx.failure or ("DeadlineExceeded", f"{arm}/{stage}: the run exceeded "
                                      "spec.activeDeadlineSeconds="
                                      f"{ctx.spec.active_deadline_seconds}")
    elif st.job_name and old_state in ACTIVE and st.job_name not in seen:
        _recorded_but_unseen(ctx, st)
    elif latest is None:
        if ctx.spec.suspend:
            _set(st, "Suspended", "RunSuspended", "spec.suspend is true")
        else:
            _start_next(ctx, st, "AttemptCreated", "")
            out.actions.append(Event("StageStarted", f"{arm}/{stage}: {st.job_name} started",
                                     "Normal", arm, stage))
    elif latest.phase == "Succeeded":
        _set(st, "Succeeded", "JobComplete", None)
        st.job_name = latest.name
        st.completion_time = parse_time(latest.finished) or ctx.now
        st.eta_seconds = 0.0
        apply_progress(st, latest.progress)
        st.progress = 100.0
        out.actions.append(Event("StageSucceeded", f"{arm}/{stage} succeeded ({latest.name})",
                                 "Normal", arm, stage))
    elif latest.phase == "Failed":
        _failed_attempt(ctx, st, latest, sum(a.phase == "Failed" for a in mine))
    else:
        _active_attempt(ctx, st, latest)
    _transition(ctx, st, old_state, latest)
    return st


def _set(st: s.StageStatus, state: str, reason: str, message: str | None) -> None:
    st.state, st.reason, st.message = s.StageState(state), reason, message


def _start_next(ctx: _Ctx, st: s.StageStatus, reason: str, message: str) -> None:
    mine = ctx.by_stage.get((st.arm, st.name), [])
    attempt = max(st.attempts, (mine[-1].attempt + 1) if mine else 0)
    name = child_name(ctx.meta["name"], st.arm, st.name, attempt)
    cfg: s.StageBase = getattr(ctx.spec.stages, st.name)
    ctx.out.actions.append(StartAttempt(st.arm, st.name, attempt, name,
                                        cfg.resources.nodes))
    _set(st, "Pending", reason, message)
    st.attempts, st.job_name = attempt + 1, name
    st.start_time = st.start_time or ctx.now
    st.completion_time = None


def _recorded_but_unseen(ctx: _Ctx, st: s.StageStatus) -> None:
    """The recorded attempt is not observed: just started (not visible yet), stopped for a
    Kueue suspension and gone with its pods, or removed by hand.

    Stopped (the stage said so): the next attempt, a new name. Otherwise it is started again
    under its own name, so that an attempt merely not observed yet is never duplicated."""
    name = st.job_name or ""
    if name in ctx.known:
        return
    if ctx.spec.suspend:
        _set(st, "Suspended", "RunSuspended", "spec.suspend is true")
        return
    if st.reason in STOPPED:
        _start_next(ctx, st, "Resumed", f"{name} was stopped and is gone; the next attempt "
                    "starts")
        ctx.out.actions.append(Event("StageResumed", f"{st.arm}/{st.name}: {st.job_name} "
                                     f"started after {name}", "Normal", st.arm, st.name))
        return
    attempt = int(name.rsplit("-", 1)[1])
    cfg: s.StageBase = getattr(ctx.spec.stages, st.name)
    ctx.out.actions.append(StartAttempt(st.arm, st.name, attempt, name, cfg.resources.nodes))
    _set(st, "Pending", "JobRecreated", f"{name} was not found; started again")


def _failed_attempt(ctx: _Ctx, st: s.StageStatus, latest: Attempt, failures: int) -> None:
    arm, stage = st.arm, st.name
    cfg: s.StageBase = getattr(ctx.spec.stages, stage)
    st.job_name = latest.name  # also when the status write was lost (restart)
    apply_progress(st, latest.progress)
    retries_left = cfg.backoff_limit - (failures - 1)
    if latest.reason in INDEX_BUDGET_SPENT:  # the indices had their retries in the Job
        retries_left = 0
    if latest.retryable and retries_left > 0 and not ctx.spec.suspend:
        msg = (f"{arm}/{stage}: attempt {latest.attempt} failed ({latest.reason}"
               f"{': ' + latest.message if latest.message else ''}); "
               f"retry {failures} of {cfg.backoff_limit}")[:4096]
        _start_next(ctx, st, latest.reason, msg)
        ctx.out.actions.append(Event("StageRetrying", msg, "Warning", arm, stage))
    elif latest.retryable and retries_left > 0:
        _set(st, "Suspended", "RunSuspended", "spec.suspend is true")
    else:
        detail = (f"{arm}/{stage}: attempt {latest.attempt} failed ({latest.reason}: "
                  f"{latest.message or 'no message'}); {failures} failure(s), "
                  f"backoffLimit {cfg.backoff_limit}")
        _set(st, "Failed", latest.reason, detail[:4096])
        st.completion_time = parse_time(latest.finished) or ctx.now
        st.eta_seconds = None
        ctx.out.actions.append(Event("StageFailed", detail, "Warning", arm, stage))
        ctx.failure = ctx.failure or (latest.reason, detail)


def _problem_kind(reason: str | None) -> str | None:
    """The kind of a stuck attempt's reason (the kubelet alternates ErrImagePull and
    ImagePullBackOff while it backs off: one kind, one Event); None for no problem."""
    if reason in ("ErrImagePull", "ImagePullBackOff"):
        return "image"
    if reason in (None, "", "PodPending", "AttemptCreated", "JobRecreated", "Resumed",
                  "PodRunning", "Started"):
        return None
    return reason


def _active_attempt(ctx: _Ctx, st: s.StageStatus, latest: Attempt) -> None:
    """An attempt that is Pending, Running or Suspended."""
    arm, stage = st.arm, st.name
    prev_reason, prev_state, prev_name = st.reason, str(st.state), st.job_name
    st.job_name = latest.name
    apply_progress(st, ctx.live.get(latest.name))
    kueue = bool(ctx.spec.queue_name)
    going = latest.reason == TERMINATING  # its pods are on their way out: nothing to stop
    if ctx.spec.suspend:
        # Kueue owns the Job's spec.suspend: it starts an admitted Job again (kueue
        # pkg/controller/jobframework/reconciler.go, ReconcileGenericJob, "handle job is
        # suspended"), and may admit a queued one at any time. So the Job is deleted.
        if kueue and not going:
            ctx.out.actions.append(StopAttempt(latest.name))
        elif not kueue and not going and latest.phase != "Suspended":
            ctx.out.actions.append(SuspendAttempt(latest.name, True))
        _set(st, "Suspended", "RunSuspended", "spec.suspend is true")
    elif kueue and not going and prev_name == latest.name and prev_reason in STOPPED:
        # Resumed while the Job stopped for the suspension is still observed (its deletion
        # not seen yet): it stays stopped, and the next attempt waits for it to go.
        ctx.out.actions.append(StopAttempt(latest.name))
        _set(st, "Pending", TERMINATING, f"{latest.name} was stopped for the suspension; "
             "the next attempt starts once its pods are gone")
    elif latest.phase == "Suspended" and not kueue:
        ctx.out.actions.append(SuspendAttempt(latest.name, False))
        _set(st, "Pending", "Resumed", None)
    elif latest.phase == "Suspended":
        _set(st, "Suspended", "QueuedInKueue", "waiting for Kueue admission")
    elif latest.phase == "Pending" and latest.reason not in ("PodPending", ""):
        # Stuck (image, Secret, scheduling) or a failed attempt's pods still terminating:
        # say why, once per new kind of reason.
        if latest.reason != TERMINATING and \
                _problem_kind(prev_reason) != _problem_kind(latest.reason):
            ctx.out.actions.append(Event(
                latest.reason, f"{arm}/{stage}: {latest.name} cannot start: "
                f"{latest.message}", "Warning", arm, stage))
        _set(st, "Pending", latest.reason, latest.message)
    elif latest.phase == "Pending" and prev_state == "Pending" and \
            prev_name == latest.name and _problem_kind(prev_reason) is None:
        pass  # still waiting to start: keep why it was started (one status write less)
    else:
        _set(st, latest.phase, latest.reason or "PodRunning", None)


def _transition(ctx: _Ctx, st: s.StageStatus, old_state: str, latest: Attempt | None) -> None:
    if str(st.state) == old_state:
        return
    seconds = None
    if st.state in ("Succeeded", "Failed"):
        seconds = _seconds(st.start_time, st.completion_time)
    elif st.state == "Running" and latest is not None:
        seconds = _seconds(latest.created, ctx.now)
    ctx.out.transitions.append(Transition(st.arm, st.name, old_state, str(st.state),
                                          st.reason or "", seconds))


# ---- step 3: derive conditions


def _derive(ctx: _Ctx, stages: list[s.StageStatus]) -> None:
    """The failure's consequences, then every condition, progress and currentStage."""
    if ctx.failure:  # a failed stage fails the run: stop the other active attempts
        stopping = {a.name for a in ctx.out.of(StopAttempt)}
        active = {a.name for atts in ctx.by_stage.values() for a in atts if a.phase in ACTIVE}
        for st in stages:
            if st.state in ACTIVE and st.job_name:
                if st.job_name in active and st.job_name not in stopping:
                    ctx.out.actions.append(StopAttempt(st.job_name))
                _set(st, "Failed", "RunFailed", "stopped because another stage failed")
                st.completion_time = ctx.now
        # Started-then-cancelled attempts are not started at all.
        ctx.out.actions = [a for a in ctx.out.actions if not isinstance(a, StartAttempt)]
    old, now, gen = ctx.old, ctx.now, ctx.generation
    suspended = ctx.spec.suspend and not ctx.failure
    new = s.PolyaRunStatus(stages=stages, observed_generation=gen,
                           start_time=old.start_time or now, report=old.report)
    active = [f"{x.arm}/{x.name}" for x in stages
              if x.state == "Suspended" or (x.state in ACTIVE and x.job_name)]
    running = [f"{x.arm}/{x.name}" for x in stages
               if x.state in ("Pending", "Running") and x.job_name]
    done = bool(stages) and all(x.state in DONE for x in stages)
    new.current_stage = ",".join(active) or None
    new.progress = 100.0 if done else round(sum(
        100.0 if x.state == "Succeeded" else x.progress for x in stages) / max(1, len(stages)),
        2)

    def put(kind: str, value: str, reason: str, message: str = "") -> None:
        set_condition(new, old, kind, value, reason, message, now, gen)

    if ctx.failure:
        reason, message = ctx.failure
        put("Running", "False", reason)
        put("Succeeded", "False", reason, message)
        put("Failed", "True", reason, message)
    elif done:
        put("Running", "False", "Completed")
        put("Succeeded", "True", "Completed", "all stages succeeded")
        put("Failed", "False", "Completed")
    else:
        reason = "Suspended" if suspended else ("StageRunning" if running else "Pending")
        put("Running", "True" if running and not suspended else "False", reason,
            ",".join(running))
        put("Succeeded", "Unknown", reason, f"running {new.current_stage}"
            if new.current_stage else "")
        put("Failed", "False", reason)
    put("Suspended", "True" if suspended else "False",
        "RunSuspended" if suspended else "NotSuspended")
    for stage in s.STAGES:
        mine = [x for x in stages if x.name == stage]
        if not mine:
            continue
        ok = all(x.state in DONE for x in mine)
        reason = "Succeeded" if ok else "Failed" if any(x.state == "Failed" for x in mine) \
            else "Running" if any(x.state in ACTIVE and x.job_name for x in mine) else "Pending"
        put(completed_condition(stage), "True" if ok else "False", reason,
            ", ".join(f"{x.arm}: {x.state}" for x in mine))
    if ctx.failure or done:
        new.completion_time = old.completion_time or now
    if done and not new.report:
        new.report = _report(stages)
    ctx.out.status = new


def _report(stages: list[s.StageStatus]) -> str | None:
    for st in stages:
        if st.name == "evaluate":
            for key in ("report", "report_md", "reportPath"):
                if st.outputs.get(key):
                    return st.outputs[key]
    return None


# ---- step 4: finish


def _finish(ctx: _Ctx) -> Plan:
    if ctx.failure:
        ctx.out.actions.append(Event("RunFailed", ctx.failure[1], "Warning"))
    elif run_state(ctx.out.status) == "Succeeded":
        ctx.out.actions.append(Event("RunSucceeded", "all stages succeeded", "Normal"))
    return ctx.out


def _finished_run(ctx: _Ctx, attempts: list[Attempt]) -> Plan:
    """A finished run only waits for its TTL, then stops its attempts (and takes in the
    final progress of succeeded stages that arrived after the run finished: an executor's
    observations of one attempt need not arrive in order)."""
    status = ctx.old.model_copy(deep=True)
    latest: dict[tuple[str, str], Attempt] = {}
    for a in sorted(attempts, key=lambda a: a.attempt):
        latest[(a.arm, a.stage)] = a
    for st in status.stages:
        a = latest.get((st.arm, st.name))
        if st.state == "Succeeded" and not st.outputs and a is not None and a.progress \
                and a.progress.get("outputs"):
            apply_progress(st, a.progress)
            st.progress = 100.0
    if not status.report and all(x.state in DONE for x in status.stages):
        status.report = _report(status.stages)
    out = Plan(status=status)
    ttl = ctx.spec.ttl_seconds_after_finished
    done_at = status.completion_time
    if ttl is not None and done_at is not None and (ctx.now - done_at).total_seconds() >= ttl:
        out.actions += [StopAttempt(a.name) for a in attempts]
    else:  # a finished run leaves nothing running
        out.actions += [StopAttempt(a.name) for a in attempts
                        if a.phase in ("Pending", "Running")]
    return out


def _invalid(meta: Mapping[str, Any], old: s.PolyaRunStatus, exc: s.SpecError,
             now: datetime) -> Plan:
    gen = meta.get("generation")
    message = "; ".join(f"{p}: {m}" for p, m in exc.errors)[:4096]
    new = s.PolyaRunStatus(stages=old.stages, progress=old.progress, observed_generation=gen,
                           start_time=old.start_time,
                           completion_time=old.completion_time or now)
    for kind, value, msg in (("Running", "False", ""), ("Succeeded", "False", message),
                             ("Failed", "True", message), ("Suspended", "False", "")):
        set_condition(new, old, kind, value, "InvalidSpec", msg, now, gen)
    out = Plan(status=new)
    prev = condition(old, "Failed")
    if prev is None or prev.reason != "InvalidSpec" or prev.message != message:
        out.actions.append(Event("InvalidSpec", message, "Warning"))
    return out


def next_wakeup(spec: Mapping[str, Any], status: s.PolyaRunStatus,
                now: datetime) -> float | None:
    """Seconds until a time-based decision (run deadline, TTL) is due, if any."""
    waits = []
    if spec.get("activeDeadlineSeconds") and status.start_time and not status.completion_time:
        waits.append(spec["activeDeadlineSeconds"] - (now - status.start_time).total_seconds())
    if spec.get("ttlSecondsAfterFinished") is not None and status.completion_time:
        waits.append(spec["ttlSecondsAfterFinished"]
                     - (now - status.completion_time).total_seconds())
    return max(0.0, min(waits)) if waits else None


def status_patch(status: s.PolyaRunStatus) -> dict[str, Any]:
    """The status as a JSON merge patch: unset top-level fields become null (deleted)."""
    body = status.dump()
    for name, info in s.PolyaRunStatus.model_fields.items():
        body.setdefault(info.alias or name, None)
    return body
