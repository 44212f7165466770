"""The pure planner: stage ordering, retries, preemption, suspend, deadlines, restarts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from polya_operator import planner as p
from polya_operator import resources as r
from polya_trainer import spec as s

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def make_run(name: str = "r1", status: dict | None = None, **spec: Any) -> dict[str, Any]:
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


def step(run: dict, jobs: list[dict], now: datetime = T0, **kw: Any) -> p.Plan:
    infos = [p.observe_job(j, j.pop("_pods", [])) for j in jobs]
    out = p.plan(run, infos, now, **kw)
    s.PolyaRunStatus.model_validate(out.status)  # the status always fits the contract
    run["status"] = out.status
    return out


def created(plan: p.Plan) -> list[str]:
    return [a.manifest["metadata"]["name"] for a in plan.of(p.CreateJob)]


def cond(status: dict, kind: str) -> dict:
    return next(c for c in status["conditions"] if c["type"] == kind)


def test_first_reconcile_creates_configmap_pvc_and_first_job_per_arm():
    run = make_run(arms=["vanilla", "polya"])
    plan = step(run, [])
    assert created(plan) == ["r1-vanilla-rl-0", "r1-polya-generate-0"]
    assert len(plan.of(p.CreateConfigMap)) == 1 and len(plan.of(p.CreatePVC)) == 1
    st = plan.status
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
    assert st["currentStage"] is None and st["completionTime"]
    # A finished run is stable: nothing more to do.
    assert step(run, list(jobs.values())).actions == []


def test_stage_completed_condition_waits_for_all_arms():
    run = make_run(arms=["vanilla", "polya"])
    step(run, [])
    plan = step(run, [job("r1-vanilla-rl-0", "Succeeded"), job("r1-polya-generate-0")])
    assert cond(plan.status, "RLCompleted")["status"] == "False"
    assert cond(plan.status, "GenerateCompleted")["status"] == "False"
    assert created(plan) == ["r1-vanilla-evaluate-0"]


def test_retry_then_success_counts_attempts():
    run = make_run(arms=["vanilla"])
    step(run, [])
    plan = step(run, [job("r1-vanilla-rl-0", "Failed")])
    assert created(plan) == ["r1-vanilla-rl-1"]
    assert [e.reason for e in plan.of(p.Event)] == ["StageRetrying"]
    rl = plan.status["stages"][0]
    assert rl["attempts"] == 2 and rl["reason"] == "BackoffLimitExceeded"
    assert plan.transitions == [] or plan.transitions[0].new == "Pending"
    plan = step(run, [job("r1-vanilla-rl-0", "Failed"), job("r1-vanilla-rl-1", "Succeeded")])
    assert plan.status["stages"][0]["state"] == "Succeeded"
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
    assert cond(plan.status, "Failed") == {**cond(plan.status, "Failed"), "status": "True",
                                           "reason": expected}
    assert cond(plan.status, "Succeeded")["status"] == "False"
    assert plan.status["stages"][0]["state"] == "Failed"
    assert {"StageFailed", "RunFailed"} <= {e.reason for e in plan.of(p.Event)}
    # Terminal: a later reconcile starts nothing.
    assert created(step(run, [j0, j1])) == []


def test_invalid_config_exit_code_is_not_retried():
    run = make_run(arms=["vanilla"])
    step(run, [])
    plan = step(run, [job("r1-vanilla-rl-0", "Failed", "PodFailurePolicy")])
    assert created(plan) == [] and cond(plan.status, "Failed")["reason"] == "InvalidConfig"


def test_preemption_is_not_a_failure_and_emits_one_event():
    run = make_run(arms=["vanilla"])
    step(run, [])
    pod = {"metadata": {"name": "p0"}, "status": {"phase": "Failed", "conditions": [
        {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}]}}
    j = job("r1-vanilla-rl-0", "Running")
    j["_pods"] = [pod]
    plan = step(run, [j])
    assert [e.reason for e in plan.of(p.Event)] == ["Preempted"]
    assert created(plan) == [] and plan.status["stages"][0]["attempts"] == 1
    j = job("r1-vanilla-rl-0", "Running")
    j["_pods"] = [pod]
    assert step(run, [j]).of(p.Event) == []  # same preemption, no new event


def test_suspend_patches_the_job_and_resume_unsuspends_it():
    run = make_run(arms=["vanilla"])
    step(run, [])
    run["spec"]["suspend"] = True
    plan = step(run, [job("r1-vanilla-rl-0", "Running")])
    assert plan.of(p.PatchJob) == [p.PatchJob("r1-vanilla-rl-0", True)]
    assert cond(plan.status, "Suspended")["status"] == "True"
    assert cond(plan.status, "Running")["status"] == "False"
    plan = step(run, [job("r1-vanilla-rl-0", "Pending", suspend=True)])
    assert plan.of(p.PatchJob) == []
    run["spec"]["suspend"] = False
    plan = step(run, [job("r1-vanilla-rl-0", "Pending", suspend=True)])
    assert plan.of(p.PatchJob) == [p.PatchJob("r1-vanilla-rl-0", False)]
    assert cond(plan.status, "Suspended")["status"] == "False"


def test_suspend_with_kueue_deletes_and_resume_recreates_the_attempt():
    run = make_run(arms=["vanilla"], queueName="gpu")
    plan = step(run, [])
    manifest = plan.of(p.CreateJob)[0].manifest
    assert manifest["spec"]["suspend"] is True
    assert manifest["metadata"]["labels"][r.KUEUE_QUEUE] == "gpu"
    run["spec"]["suspend"] = True
    plan = step(run, [job("r1-vanilla-rl-0", "Running")])
    assert plan.of(p.DeleteJob) == [p.DeleteJob("r1-vanilla-rl-0")]
    run["spec"]["suspend"] = False
    plan = step(run, [])
    assert created(plan) == ["r1-vanilla-rl-0"]


def test_run_deadline_fails_the_run_and_deletes_active_jobs():
    run = make_run(arms=["vanilla"], activeDeadlineSeconds=60)
    step(run, [])
    plan = step(run, [job("r1-vanilla-rl-0")], now=T0 + timedelta(seconds=61))
    assert plan.of(p.DeleteJob) == [p.DeleteJob("r1-vanilla-rl-0")]
    assert cond(plan.status, "Failed")["reason"] == "DeadlineExceeded"
    assert p.next_wakeup(make_run(activeDeadlineSeconds=60, status={
        "startTime": p.iso(T0)}), T0 + timedelta(seconds=10)) == 50


def test_ttl_deletes_jobs_after_the_run_finished():
    run = make_run(arms=["vanilla"], ttlSecondsAfterFinished=30)
    step(run, [])
    step(run, [job("r1-vanilla-rl-0", "Succeeded")])
    done = [job("r1-vanilla-rl-0", "Succeeded"), job("r1-vanilla-evaluate-0", "Succeeded")]
    plan = step(run, done)
    assert cond(plan.status, "Succeeded")["status"] == "True"
    later = datetime.fromisoformat(plan.status["completionTime"].replace("Z", "+00:00"))
    assert step(run, done, now=later + timedelta(seconds=10)).actions == []
    plan = step(run, done, now=later + timedelta(seconds=31))
    assert {a.name for a in plan.of(p.DeleteJob)} == {"r1-vanilla-rl-0",
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
    assert created(plan) == [] and plan.of(p.CreateConfigMap) == []
    failed = cond(plan.status, "Failed")
    assert failed["reason"] == "InvalidSpec" and "spec.stages.rl.numGenerations" in \
        failed["message"]
    assert [e.reason for e in plan.of(p.Event)] == ["InvalidSpec"]
    assert step(run, []).of(p.Event) == []  # reported once


def test_progress_from_live_endpoint_and_termination_message():
    run = make_run(arms=["vanilla"])
    step(run, [])
    plan = step(run, [job("r1-vanilla-rl-0")], live={"r1-vanilla-rl-0": {
        "stage": "rl", "progress": 40.0, "etaSeconds": 12.5, "metrics": {"loss": 0.5}}})
    rl = plan.status["stages"][0]
    assert rl["progress"] == 40.0 and rl["etaSeconds"] == 12.5 and rl["metrics"]["loss"] == 0.5
    assert plan.status["progress"] == 20.0 and rl["state"] == "Running"
    done = job("r1-vanilla-rl-0", "Succeeded")
    done["_pods"] = [{"metadata": {"name": "p"}, "status": {"containerStatuses": [{"state": {
        "terminated": {"exitCode": 0, "message": '{"stage":"rl","progress":100,'
                       '"outputs":{"model":"vanilla/rl/model"},"metrics":{"reward_mean":0.7}}'}
    }}]}}]
    rl = step(run, [done]).status["stages"][0]
    assert rl["outputs"] == {"model": "vanilla/rl/model"} and rl["metrics"]["reward_mean"] == 0.7


def test_spec_change_rewrites_the_configmap_for_later_stages():
    run = make_run(arms=["vanilla"])
    step(run, [])
    run["metadata"]["generation"] = 2
    run["spec"]["stages"] = {"evaluate": {"samples": 8, "k": [1, 8]}}
    plan = step(run, [job("r1-vanilla-rl-0")])
    cms = plan.of(p.CreateConfigMap)
    assert len(cms) == 1 and cms[0].replace and "\"samples\": 8" in cms[0].manifest["data"][
        "run.yaml"]
    assert plan.status["observedGeneration"] == 2


def test_failure_in_one_arm_stops_the_other():
    run = make_run(arms=["vanilla", "polya"], stages={"rl": {"backoffLimit": 0}})
    step(run, [])
    plan = step(run, [job("r1-vanilla-rl-0", "Failed"), job("r1-polya-generate-0")])
    assert plan.of(p.DeleteJob) == [p.DeleteJob("r1-polya-generate-0")]
    assert created(plan) == []


async def test_admission_webhook_rejects_naming_the_field():
    import kopf
    from polya_operator.handlers import Operator

    await Operator.validate(spec={"arms": ["vanilla"]})  # valid: no exception
    with pytest.raises(kopf.AdmissionError, match=r"spec\.arms\[0\]"):
        await Operator.validate(spec={"arms": ["nope"]})
