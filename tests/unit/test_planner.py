"""The pure planner (polya_trainer.engine.planner) fed by the Kubernetes executor's
observation (polya_operator.executor.observe_job of Job and pod objects as the API server
returns them): stage ordering, retries, preemption, suspend, deadlines, restarts. The same
rules under the local executor (child processes): tests/unit/test_planner_local.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from polya_operator import executor as x
from polya_operator import resources as r
from polya_trainer import spec as s
from polya_trainer.engine import local
from polya_trainer.engine import planner as p

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def make_run(name: str = "r1", status: dict | None = None, **spec: Any) -> dict[str, Any]:
    spec.setdefault("model", {"name": "org/model"})
    # Parallel arms unless a test says otherwise (the default ReadWriteOnce claim makes the
    # arms take turns: see test_arms_take_turns_on_a_read_write_once_workspace).
    spec.setdefault("storage", {"accessMode": "ReadWriteMany"})
    return {"apiVersion": s.API_VERSION, "kind": s.KIND,
            "metadata": {"name": name, "namespace": "default", "uid": "u-1", "generation": 1},
            "spec": spec, "status": status or {}}


def job(name: str, phase: str = "Running", reason: str = "", pods: list | None = None,
        suspend: bool = False) -> dict[str, Any]:
    run, arm, stage, attempt = name.rsplit("-", 3)
    st: dict[str, Any] = {"startTime": p.iso(T0)}
    if phase == "Succeeded":
        st["conditions"] = [{"type": "Complete", "status": "True"}]
        st["completionTime"] = p.iso(T0 + timedelta(minutes=5))
    elif phase == "Failed":
        st["conditions"] = [{"type": "Failed", "status": "True", "reason": reason or
                             "BackoffLimitExceeded", "message": "boom"}]
    elif phase == "Running":
        st["ready"] = 1
    return {"metadata": {"name": name, "creationTimestamp": p.iso(T0),
                         "labels": {r.LABEL_RUN: run, r.LABEL_ARM: arm, r.LABEL_STAGE: stage,
                                    r.LABEL_ATTEMPT: attempt}},
            "spec": {"suspend": suspend}, "status": st}


class Step(p.Plan):
    """A plan with its status as the JSON the API server stores (and the objects its
    actions create, as the Kubernetes executor builds them)."""

    def __init__(self, plan: p.Plan, run: dict[str, Any]):
        super().__init__(plan.actions, plan.status, plan.transitions)
        self.json = plan.status.dump()
        spec = x.parse(run["spec"])
        self.objects = [] if isinstance(spec, s.SpecError) else [
            m for a in plan.actions for m in x.manifests(a, run["metadata"], spec)]

    def kind(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.objects if m["kind"] == kind]


def step(run: dict, jobs: list[dict], now: datetime = T0,
         lingering: tuple[p.Attempt, ...] = (), **kw: Any) -> Step:
    """One reconcile over these Jobs (and attempts whose Job is gone but pods are not)."""
    infos = [x.observe_job(j, j.pop("_pods", [])) for j in jobs] + list(lingering)
    parsed = x.parse(run["spec"])
    policy = x.policy(parsed) if isinstance(parsed, s.PolyaRunSpec) else p.Policy()
    out = Step(p.plan(run, infos, now, policy=policy, parsed=parsed, **kw), run)
    s.PolyaRunStatus.model_validate(out.json)  # the status always fits the contract
    run["status"] = out.json
    return out


def created(plan: p.Plan) -> list[str]:
    return [a.name for a in plan.of(p.StartAttempt)]


def cond(status: dict, kind: str) -> dict:
    return next(c for c in status["conditions"] if c["type"] == kind)


def test_first_reconcile_creates_configmap_pvc_and_first_job_per_arm():
    run = make_run(arms=["vanilla", "polya"])
    plan = step(run, [])
    assert created(plan) == ["r1-vanilla-rl-0", "r1-polya-generate-0"]
    assert len(plan.kind("ConfigMap")) == 1 and len(plan.kind("PersistentVolumeClaim")) == 1
    st = plan.json
    assert st["currentStage"] == "vanilla/rl,polya/generate"
    assert cond(st, "Succeeded")["status"] == "Unknown"
    assert [(x["arm"], x["name"]) for x in st["stages"]] == [
        ("vanilla", "rl"), ("vanilla", "evaluate"), ("polya", "generate"),
        ("polya", "midtrain"), ("polya", "rl"), ("polya", "evaluate")]
    assert {e.reason for e in plan.of(p.Event)} == {"StageStarted"}


def test_happy_path_two_arms_runs_stages_in_order_then_succeeds():
    run = make_run(arms=["vanilla", "polya"])
    jobs: dict[str, dict] = {}
    order = []
    for _ in range(10):
        plan = step(run, list(jobs.values()))
        for name in created(plan):
            order.append(name)
            jobs[name] = job(name, "Running")
        # every active job finishes before the next reconcile
        for name, j in list(jobs.items()):
            if j["status"].get("ready"):
                jobs[name] = job(name, "Succeeded")
        if cond(run["status"], "Succeeded")["status"] == "True":
            break
    assert order == ["r1-vanilla-rl-0", "r1-polya-generate-0", "r1-vanilla-evaluate-0",
                     "r1-polya-midtrain-0", "r1-polya-rl-0", "r1-polya-evaluate-0"]
    st = run["status"]
    assert cond(st, "Succeeded")["reason"] == "Completed" and st["progress"] == 100.0
    assert all(cond(st, p.completed_condition(x))["status"] == "True" for x in s.STAGES)
    assert cond(st, "RLCompleted")["status"] == "True"
    assert st.get("currentStage") is None and st["completionTime"]
    # A finished run is stable: nothing more to do.
    assert step(run, list(jobs.values())).actions == []


def test_stage_completed_condition_waits_for_all_arms():
    run = make_run(arms=["vanilla", "polya"])
    step(run, [])
    plan = step(run, [job("r1-vanilla-rl-0", "Succeeded"), job("r1-polya-generate-0")])
    assert cond(plan.json, "RLCompleted")["status"] == "False"
    assert cond(plan.json, "GenerateCompleted")["status"] == "False"
    assert created(plan) == ["r1-vanilla-evaluate-0"]


def test_retry_then_success_counts_attempts():
    run = make_run(arms=["vanilla"])
    step(run, [])
    plan = step(run, [job("r1-vanilla-rl-0", "Failed")])
    assert created(plan) == ["r1-vanilla-rl-1"]
    assert [e.reason for e in plan.of(p.Event)] == ["StageRetrying"]
    rl = plan.json["stages"][0]
    assert rl["attempts"] == 2 and rl["reason"] == "BackoffLimitExceeded"
    assert plan.transitions == [] or plan.transitions[0].new == "Pending"
    plan = step(run, [job("r1-vanilla-rl-0", "Failed"), job("r1-vanilla-rl-1", "Succeeded")])
    assert plan.json["stages"][0]["state"] == "Succeeded"
    assert created(plan) == ["r1-vanilla-evaluate-0"]


@pytest.mark.parametrize(("reason", "pods", "expected"), [
    ("BackoffLimitExceeded", [], "BackoffLimitExceeded"),
    ("DeadlineExceeded", [], "DeadlineExceeded"),
    ("BackoffLimitExceeded", [{"metadata": {"name": "x"}, "status": {"containerStatuses": [
        {"state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}]}}], "OOMKilled"),
])
def test_retries_exhausted_fail_the_run_with_the_reason(reason, pods, expected):
    run = make_run(arms=["vanilla"], stages={"rl": {"backoffLimit": 1}})
    step(run, [])
    j0 = job("r1-vanilla-rl-0", "Failed", reason)
    j0["_pods"] = list(pods)
    assert created(step(run, [j0])) == ["r1-vanilla-rl-1"]
    j0 = job("r1-vanilla-rl-0", "Failed", reason)
    j1 = job("r1-vanilla-rl-1", "Failed", reason)
    j1["_pods"] = list(pods)
    plan = step(run, [j0, j1])
    assert created(plan) == []
    assert cond(plan.json, "Failed") == {**cond(plan.json, "Failed"), "status": "True",
                                           "reason": expected}
    assert cond(plan.json, "Succeeded")["status"] == "False"
    assert plan.json["stages"][0]["state"] == "Failed"
    assert {"StageFailed", "RunFailed"} <= {e.reason for e in plan.of(p.Event)}
    # Terminal: a later reconcile starts nothing.
    assert created(step(run, [j0, j1])) == []


@pytest.mark.parametrize("reason", ["FailedIndexes", "MaxFailedIndexesExceeded"])
def test_a_sharded_stage_has_one_retry_budget_per_index(reason):
    """Each index is retried in its Job (backoffLimitPerIndex = backoffLimit); a Job that
    failed because an index spent that budget is not retried as a whole, so an index runs at
    most backoffLimit + 1 times, not (backoffLimit + 1) squared."""
    run = make_run(arms=["vanilla"], stages={"evaluate": {"shards": 4, "backoffLimit": 2}})
    step(run, [])
    rl = job("r1-vanilla-rl-0", "Succeeded")
    plan = step(run, [rl])
    [ev] = plan.kind("Job")
    assert ev["spec"]["backoffLimitPerIndex"] == 2 and "backoffLimit" not in ev["spec"]
    plan = step(run, [rl, job("r1-vanilla-evaluate-0", "Failed", reason)])
    assert created(plan) == [] and "StageRetrying" not in {e.reason for e in plan.of(p.Event)}
    assert plan.json["stages"][-1]["state"] == "Failed"
    assert cond(plan.json, "Failed")["reason"] == reason
    # Any other failure of the Job (e.g. its deadline) is still retried by the planner.
    run = make_run(arms=["vanilla"], stages={"evaluate": {"shards": 4, "backoffLimit": 2}})
    step(run, [])
    step(run, [rl])
    plan = step(run, [rl, job("r1-vanilla-evaluate-0", "Failed", "DeadlineExceeded")])
    assert created(plan) == ["r1-vanilla-evaluate-1"]
    # The local runner's IndexedProcesses report the same reason (engine/fanout.py).
    assert local.observe_exit(1, None, indexed=True)[1] in p.INDEX_BUDGET_SPENT
    assert local.observe_exit(1, None)[1] == "BackoffLimitExceeded"


def test_invalid_config_exit_code_is_not_retried():
    run = make_run(arms=["vanilla"])
    step(run, [])
    plan = step(run, [job("r1-vanilla-rl-0", "Failed", "PodFailurePolicy")])
    assert created(plan) == [] and cond(plan.json, "Failed")["reason"] == "InvalidConfig"


def test_invalid_config_from_the_termination_message_is_not_retried():
    """Under `accelerate launch` the pod exits 1 (torch elastic's code for any failed worker),
    so the verdict comes from rank 0's termination message (reason InvalidConfig, written by
    the stage entrypoint on a SpecError), read from the pod's terminated container state."""
    import json

    run = make_run(arms=["vanilla"])
    step(run, [])
    msg = json.dumps({"stage": "rl", "arm": "vanilla", "state": "Failed",
                      "reason": "InvalidConfig",
                      "message": "spec.stages.generate.backend: asks for vLLM"})
    pod = {"metadata": {"name": "p0"}, "status": {"phase": "Failed", "containerStatuses": [
        {"name": "trainer", "state": {"terminated": {"exitCode": 1, "reason": "Error",
                                                     "message": msg}}}]}}
    j = job("r1-vanilla-rl-0", "Failed")
    j["_pods"] = [pod]
    plan = step(run, [j])
    failed = cond(plan.json, "Failed")
    assert created(plan) == [] and failed["reason"] == "InvalidConfig"
    assert "asks for vLLM" in failed["message"]
    # The same pod with another reason is retried (a new attempt is created).
    run = make_run(arms=["vanilla"])
    step(run, [])
    j = job("r1-vanilla-rl-0", "Failed")
    j["_pods"] = [json.loads(json.dumps(pod).replace("InvalidConfig", "RuntimeError"))]
    assert created(step(run, [j])) == ["r1-vanilla-rl-1"]


def test_preemption_is_not_a_failure_and_emits_one_event():
    run = make_run(arms=["vanilla"])
    step(run, [])
    pod = {"metadata": {"name": "p0"}, "status": {"phase": "Failed", "conditions": [
        {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}]}}
    j = job("r1-vanilla-rl-0", "Running")
    j["_pods"] = [pod]
    plan = step(run, [j])
    assert [e.reason for e in plan.of(p.Event)] == ["Preempted"]
    assert created(plan) == [] and plan.json["stages"][0]["attempts"] == 1
    j = job("r1-vanilla-rl-0", "Running")
    j["_pods"] = [pod]
    assert step(run, [j]).of(p.Event) == []  # same preemption, no new event


def test_suspend_patches_the_job_and_resume_unsuspends_it():
    run = make_run(arms=["vanilla"])
    step(run, [])
    run["spec"]["suspend"] = True
    plan = step(run, [job("r1-vanilla-rl-0", "Running")])
    assert plan.of(p.SuspendAttempt) == [p.SuspendAttempt("r1-vanilla-rl-0", True)]
    assert cond(plan.json, "Suspended")["status"] == "True"
    assert cond(plan.json, "Running")["status"] == "False"
    plan = step(run, [job("r1-vanilla-rl-0", "Pending", suspend=True)])
    assert plan.of(p.SuspendAttempt) == []
    run["spec"]["suspend"] = False
    plan = step(run, [job("r1-vanilla-rl-0", "Pending", suspend=True)])
    assert plan.of(p.SuspendAttempt) == [p.SuspendAttempt("r1-vanilla-rl-0", False)]
    assert cond(plan.json, "Suspended")["status"] == "False"


def trainer_pod(job_name: str, phase: str = "Running") -> dict[str, Any]:
    """A pod of that Job as the executor indexes it (executor.compact_pod keeps its labels)."""
    run, arm, stage, attempt = job_name.rsplit("-", 3)
    return {"metadata": {"name": f"{job_name}-x1", "labels": {
        r.LABEL_RUN: run, r.LABEL_ARM: arm, r.LABEL_STAGE: stage, r.LABEL_ATTEMPT: attempt,
        "batch.kubernetes.io/job-name": job_name}}, "status": {"phase": phase}}


def test_suspend_with_kueue_deletes_and_resume_starts_the_next_attempt():
    """Kueue owns a queued Job's spec.suspend (its reconciler unsuspends an admitted Job:
    kueue pkg/controller/jobframework/reconciler.go), so a suspended run deletes the Job;
    the resume is a new attempt, queued again."""
    run = make_run(arms=["vanilla"], queueName="gpu")
    plan = step(run, [])
    manifest = plan.kind("Job")[0]
    assert manifest["spec"]["suspend"] is True
    assert manifest["metadata"]["labels"][r.KUEUE_QUEUE] == "gpu"
    run["spec"]["suspend"] = True
    plan = step(run, [job("r1-vanilla-rl-0", "Running")])
    assert plan.of(p.StopAttempt) == [p.StopAttempt("r1-vanilla-rl-0")]
    assert plan.json["stages"][0]["state"] == "Suspended"
    assert step(run, []).actions == []  # gone, and its pods too: nothing to do while suspended
    run["spec"]["suspend"] = False
    plan = step(run, [])
    assert created(plan) == ["r1-vanilla-rl-1"]
    assert plan.kind("Job")[0]["spec"]["suspend"] is True  # queued again
    st = plan.json["stages"][0]
    assert (st["state"], st["reason"], st["attempts"]) == ("Pending", "Resumed", 2)
    assert [e.reason for e in plan.of(p.Event)] == ["StageResumed"]


def test_a_kueue_resume_waits_for_the_stopped_attempts_pods():
    """A Job deleted with background propagation is gone at once; its pods are deleted by the
    garbage collector afterwards and live until their containers stop (up to the grace
    period). The next attempt would write the same workspace: it starts only after them."""
    run = make_run(arms=["vanilla"], queueName="gpu")
    step(run, [])
    run["spec"]["suspend"] = True
    step(run, [job("r1-vanilla-rl-0", "Running")])
    run["spec"]["suspend"] = False
    # Resumed before the deletion was observed: the Job stays stopped, nothing starts.
    plan = step(run, [job("r1-vanilla-rl-0", "Running")])
    assert plan.of(p.StopAttempt) == [p.StopAttempt("r1-vanilla-rl-0")] and created(plan) == []
    assert run["status"]["stages"][0]["reason"] == "Terminating"
    # The Job is gone, its pod is not.
    ghost = x.lingering("r1-vanilla-rl-0", [trainer_pod("r1-vanilla-rl-0")])
    assert ghost is not None and (ghost.attempt, ghost.phase) == (0, "Pending")
    for _ in range(2):
        plan = step(run, [], lingering=(ghost,))
        assert created(plan) == [] and plan.of(p.StopAttempt) == []
        st = run["status"]["stages"][0]
        assert (st["state"], st["reason"]) == ("Pending", "Terminating")
        assert "1 pod(s) to terminate" in st["message"]
    assert created(step(run, [])) == ["r1-vanilla-rl-1"]  # the pod is gone
    # Pods that have stopped (Succeeded or Failed, not yet collected) hold nothing.
    assert x.lingering("r1-vanilla-rl-0", [trainer_pod("r1-vanilla-rl-0", "Failed")]) is None


def test_a_kueue_run_suspended_while_its_pods_terminate_resumes_once_they_are_gone():
    run = make_run(arms=["vanilla"], queueName="gpu")
    step(run, [])
    run["spec"]["suspend"] = True
    # Still queued (suspended by Kueue): deleted too, else Kueue could admit it meanwhile.
    plan = step(run, [job("r1-vanilla-rl-0", "Pending", suspend=True)])
    assert plan.of(p.StopAttempt) == [p.StopAttempt("r1-vanilla-rl-0")]
    ghost = x.lingering("r1-vanilla-rl-0", [trainer_pod("r1-vanilla-rl-0")])
    assert ghost is not None
    plan = step(run, [], lingering=(ghost,))
    assert plan.actions == [] and run["status"]["stages"][0]["state"] == "Suspended"
    run["spec"]["suspend"] = False
    assert created(step(run, [], lingering=(ghost,))) == []
    assert created(step(run, [])) == ["r1-vanilla-rl-1"]


def test_a_job_removed_by_hand_is_started_again_under_its_name():
    """A recorded attempt not observed while it was running may just not be observed yet:
    started again under its own name, never duplicated as a new attempt."""
    run = make_run(arms=["vanilla"])
    step(run, [])
    step(run, [job("r1-vanilla-rl-0", "Running")])
    plan = step(run, [])
    assert created(plan) == ["r1-vanilla-rl-0"]
    assert run["status"]["stages"][0]["reason"] == "JobRecreated"


def test_run_deadline_fails_the_run_and_deletes_active_jobs():
    run = make_run(arms=["vanilla"], activeDeadlineSeconds=60)
    step(run, [])
    plan = step(run, [job("r1-vanilla-rl-0")], now=T0 + timedelta(seconds=61))
    assert plan.of(p.StopAttempt) == [p.StopAttempt("r1-vanilla-rl-0")]
    assert cond(plan.json, "Failed")["reason"] == "DeadlineExceeded"
    assert p.next_wakeup({"activeDeadlineSeconds": 60}, s.PolyaRunStatus(start_time=T0),
                         T0 + timedelta(seconds=10)) == 50


def test_ttl_deletes_jobs_after_the_run_finished():
    run = make_run(arms=["vanilla"], ttlSecondsAfterFinished=30)
    step(run, [])
    step(run, [job("r1-vanilla-rl-0", "Succeeded")])
    done = [job("r1-vanilla-rl-0", "Succeeded"), job("r1-vanilla-evaluate-0", "Succeeded")]
    plan = step(run, done)
    assert cond(plan.json, "Succeeded")["status"] == "True"
    later = datetime.fromisoformat(plan.json["completionTime"].replace("Z", "+00:00"))
    assert step(run, done, now=later + timedelta(seconds=10)).actions == []
    plan = step(run, done, now=later + timedelta(seconds=31))
    assert {a.name for a in plan.of(p.StopAttempt)} == {"r1-vanilla-rl-0",
                                                       "r1-vanilla-evaluate-0"}


def test_restart_never_duplicates_a_job():
    """Status says attempt 0 runs; with or without the Job observed nothing new is started
    except recreating the very same name (which the API answers 409 when it exists)."""
    run = make_run(arms=["vanilla"])
    step(run, [])
    status = run["status"]
    assert created(step(make_run(status=status, arms=["vanilla"]),
                        [job("r1-vanilla-rl-0")])) == []
    # Just created by this process: wait for its watch event.
    assert created(step(make_run(status=status, arms=["vanilla"]), [],
                        known={"r1-vanilla-rl-0"})) == []
    # Not observed after a restart: the same name again, never attempt 1.
    assert created(step(make_run(status=status, arms=["vanilla"]), [])) == ["r1-vanilla-rl-0"]
    # No status at all (lost), Job observed: adopt it.
    assert created(step(make_run(arms=["vanilla"]), [job("r1-vanilla-rl-0")])) == []


def test_invalid_spec_names_the_field_and_creates_nothing():
    run = make_run(stages={"rl": {"numGenerations": 1}})
    plan = step(run, [])
    assert created(plan) == [] and plan.of(p.SnapshotSpec) == [] and plan.objects == []
    failed = cond(plan.json, "Failed")
    assert failed["reason"] == "InvalidSpec" and "spec.stages.rl.numGenerations" in \
        failed["message"]
    assert [e.reason for e in plan.of(p.Event)] == ["InvalidSpec"]
    assert step(run, []).of(p.Event) == []  # reported once


def test_progress_from_live_endpoint_and_termination_message():
    run = make_run(arms=["vanilla"])
    step(run, [])
    plan = step(run, [job("r1-vanilla-rl-0")], live={"r1-vanilla-rl-0": {
        "stage": "rl", "progress": 40.0, "etaSeconds": 12.5, "metrics": {"loss": 0.5}}})
    rl = plan.json["stages"][0]
    assert rl["progress"] == 40.0 and rl["etaSeconds"] == 12.5 and rl["metrics"]["loss"] == 0.5
    assert plan.json["progress"] == 20.0 and rl["state"] == "Running"
    done = job("r1-vanilla-rl-0", "Succeeded")
    done["_pods"] = [{"metadata": {"name": "p"}, "status": {"containerStatuses": [{"state": {
        "terminated": {"exitCode": 0, "message": '{"stage":"rl","progress":100,'
                       '"outputs":{"model":"vanilla/rl/model"},"metrics":{"reward_mean":0.7}}'}
    }}]}}]
    rl = step(run, [done]).json["stages"][0]
    assert rl["outputs"] == {"model": "vanilla/rl/model"} and rl["metrics"]["reward_mean"] == 0.7


def test_spec_change_snapshots_a_new_configmap_for_later_stages():
    """A running attempt keeps its spec: its Job mounts the ConfigMap of its generation, which
    is immutable; an edit makes the next generation's ConfigMap for the Jobs created after."""
    run = make_run(arms=["vanilla"])
    first = step(run, [])
    (cm1,) = first.kind("ConfigMap")
    rl_job = first.kind("Job")[0]
    assert cm1["metadata"]["name"] == "r1-spec" and cm1["immutable"]
    run["metadata"]["generation"] = 2
    run["spec"]["stages"] = {"evaluate": {"samples": 8, "k": [1, 8]}}
    plan = step(run, [job("r1-vanilla-rl-0")])
    cms = plan.kind("ConfigMap")
    assert len(cms) == 1 and cms[0]["metadata"]["name"] == "r1-spec-2"
    assert "\"samples\": 8" in cms[0]["data"]["run.yaml"]
    assert "\"samples\": 8" not in cm1["data"]["run.yaml"]
    assert plan.json["observedGeneration"] == 2
    # The running attempt's pod template (and so any replacement pod) reads generation 1.
    vols = {v["name"]: v for v in rl_job["spec"]["template"]["spec"]["volumes"]}
    assert vols["spec"]["configMap"]["name"] == "r1-spec"
    # The next stage's Job, created under generation 2, reads the new snapshot.
    plan = step(run, [job("r1-vanilla-rl-0", "Succeeded")])
    ev = plan.kind("Job")[0]
    vols = {v["name"]: v for v in ev["spec"]["template"]["spec"]["volumes"]}
    assert vols["spec"]["configMap"]["name"] == "r1-spec-2"


def test_failure_in_one_arm_stops_the_other():
    run = make_run(arms=["vanilla", "polya"], stages={"rl": {"backoffLimit": 0}})
    step(run, [])
    plan = step(run, [job("r1-vanilla-rl-0", "Failed"), job("r1-polya-generate-0")])
    assert plan.of(p.StopAttempt) == [p.StopAttempt("r1-polya-generate-0")]
    assert created(plan) == []


async def test_admission_webhook_rejects_naming_the_field():
    import kopf
    from polya_operator.handlers import Operator

    model = {"name": "org/model"}
    await Operator.validate(spec={"model": model, "arms": ["vanilla"]}, name="r1")  # valid
    with pytest.raises(kopf.AdmissionError, match=r"spec\.arms\[0\]"):
        await Operator.validate(spec={"model": model, "arms": ["nope"]})
    with pytest.raises(kopf.AdmissionError, match=r"spec\.model"):
        await Operator.validate(spec={"arms": ["vanilla"]})
    with pytest.raises(kopf.AdmissionError, match=r"metadata\.name"):
        await Operator.validate(spec={"model": model}, name="2024-exp")


# --------------------------------------------------------------------------- issue 13


def _active(plan: p.Plan) -> list[str]:
    return [x["jobName"] for x in plan.json["stages"]
            if x["state"] in p.ACTIVE and x.get("jobName")]


def test_arms_take_turns_on_a_read_write_once_workspace():
    """The double is the attach/detach controller's rule (kubernetes
    pkg/controller/volume/attachdetach/reconciler/reconciler.go: a volume that is not
    multi-attachable and already attached to one node is not attached to another: "Multi-Attach
    error", the pod stays in ContainerCreating). The scheduler may put two Jobs' pods on
    different nodes, so on a ReadWriteOnce claim at most one Job may be active at a time.
    Left out: two pods on the same node may share a ReadWriteOnce volume; we never rely on it."""
    run = make_run(arms=["vanilla", "polya"], storage={})
    jobs: list[dict] = []
    order = []
    for _ in range(10):
        plan = step(run, [dict(j) for j in jobs])
        assert len(_active(plan)) <= 1, _active(plan)  # never two Jobs on the RWO claim
        order += created(plan)
        if not created(plan):
            break
        jobs = [job(n, "Succeeded") for n in order]
    assert order == ["r1-vanilla-rl-0", "r1-vanilla-evaluate-0", "r1-polya-generate-0",
                     "r1-polya-midtrain-0", "r1-polya-rl-0", "r1-polya-evaluate-0"]
    assert cond(run["status"], "Succeeded")["status"] == "True"
    # ReadWriteMany (or an object store) lets the arms run at once.
    for storage in ({"accessMode": "ReadWriteMany"}, {"uri": "s3://b/x"}):
        plan = step(make_run(arms=["vanilla", "polya"], storage=storage), [])
        assert created(plan) == ["r1-vanilla-rl-0", "r1-polya-generate-0"], storage


def _pending_pod(**status: Any) -> dict:
    return {"metadata": {"name": "pod-1", "creationTimestamp": p.iso(T0)},
            "status": {"phase": "Pending", **status}}


STUCK = [
    ("ImagePullBackOff", {"containerStatuses": [{"name": "trainer", "state": {"waiting": {
        "reason": "ImagePullBackOff",
        "message": 'Back-off pulling image "trainer:typo"'}}}]}, "trainer:typo"),
    ("CreateContainerConfigError", {"containerStatuses": [{"name": "trainer", "state": {
        "waiting": {"reason": "CreateContainerConfigError",
                    "message": 'secret "hf-token" not found'}}}]}, "hf-token"),
    ("Unschedulable", {"conditions": [{"type": "PodScheduled", "status": "False",
                                       "reason": "Unschedulable",
                                       "message": "0/3 nodes are available: 3 Insufficient "
                                                  "nvidia.com/gpu."}]}, "nvidia.com/gpu"),
]


@pytest.mark.parametrize(("reason", "status", "detail"), STUCK, ids=[c[0] for c in STUCK])
def test_a_stuck_pod_is_named_in_status_and_a_warning_event(reason, status, detail):
    """Pod status as the kubelet (pkg/kubelet/images/types.go, kuberuntime_container.go:
    waiting reasons) and the scheduler (schedule_one.go handleSchedulingFailure: PodScheduled
    False, reason Unschedulable) write it; the pod watch event triggers the reconcile."""
    run = make_run(arms=["vanilla"])
    step(run, [])
    pending = job("r1-vanilla-rl-0", "Pending")
    pending["_pods"] = [_pending_pod(**status)]
    plan = step(run, [pending])
    rl = run["status"]["stages"][0]
    assert rl["state"] == "Pending" and rl["reason"] == reason and detail in rl["message"]
    warnings = [e for e in plan.of(p.Event) if e.type == "Warning"]
    assert [e.reason for e in warnings] == [reason] and detail in warnings[0].message
    # The next reconcile with the same problem posts no second Event.
    pending = job("r1-vanilla-rl-0", "Pending")
    pending["_pods"] = [_pending_pod(**status)]
    assert step(run, [pending]).of(p.Event) == []
    # Once the pod runs, the problem is gone from the status.
    step(run, [job("r1-vanilla-rl-0", "Running")])
    rl = run["status"]["stages"][0]
    assert rl["state"] == "Running" and rl["reason"] == "PodRunning" and not rl.get("message")


def test_image_pull_back_off_flapping_is_one_event():
    """The kubelet alternates ErrImagePull and ImagePullBackOff while backing off."""
    run = make_run(arms=["vanilla"])
    step(run, [])
    events = []
    for why in ("ErrImagePull", "ImagePullBackOff", "ErrImagePull", "ImagePullBackOff"):
        pending = job("r1-vanilla-rl-0", "Pending")
        pending["_pods"] = [_pending_pod(containerStatuses=[{"name": "trainer", "state": {
            "waiting": {"reason": why, "message": "pull access denied"}}}])]
        events += step(run, [pending]).of(p.Event)
        assert run["status"]["stages"][0]["reason"] == why
    assert len(events) == 1


def test_next_attempt_waits_for_the_failed_attempts_pods():
    """kubernetes pkg/controller/job/job_controller.go (syncJob): with a pod failure policy
    the Job gets FailureTarget at once and Failed only when its pods have terminated
    (status.terminating counts those still going). A new attempt before that would write
    the workspace next to a pod still checkpointing."""
    run = make_run(arms=["vanilla"])
    step(run, [])
    dying = job("r1-vanilla-rl-0", "Running")
    dying["status"]["conditions"] = [{"type": "FailureTarget", "status": "True",
                                      "reason": "BackoffLimitExceeded", "message": "boom"}]
    dying["status"].update(active=0, ready=0, terminating=1)
    dying["_pods"] = [{"metadata": {"name": "pod-1", "creationTimestamp": p.iso(T0),
                                    "deletionTimestamp": p.iso(T0)},
                       "status": {"phase": "Running"}}]
    plan = step(run, [dying])
    assert created(plan) == []
    assert run["status"]["stages"][0]["reason"] == "Terminating"
    # The pod is gone: the Job controller adds Failed; now the retry starts.
    gone = job("r1-vanilla-rl-0", "Failed")
    plan = step(run, [gone])
    assert created(plan) == ["r1-vanilla-rl-1"]
    # FailureTarget with no pod left (terminating 0) is final too.
    run2 = make_run(arms=["vanilla"])
    step(run2, [])
    done = job("r1-vanilla-rl-0", "Running")
    done["status"] = {"startTime": p.iso(T0), "active": 0, "terminating": 0, "conditions": [
        {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"}]}
    assert created(step(run2, [done])) == ["r1-vanilla-rl-1"]


@pytest.mark.parametrize("name", ["2024-exp", "a.b"])
def test_a_name_children_cannot_carry_is_an_invalid_spec(name):
    run = make_run(name=name, arms=["vanilla"])
    plan = step(run, [])
    assert created(plan) == [] and plan.objects == []
    failed = cond(run["status"], "Failed")
    assert failed["reason"] == "InvalidSpec" and "metadata.name" in failed["message"]
