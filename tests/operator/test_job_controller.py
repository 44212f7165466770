"""The fake Job controller (fakecluster.py) decides from the Job as the operator renders it.

The cases are the Job controller's documented outcomes (the Job concepts page: "Pod failure
policy", "Backoff limit per index", "Job termination and cleanup"), applied to Jobs rendered
by polya_operator.resources, then one scenario end to end through the operator.
"""

from __future__ import annotations

from typing import Any

import pytest
from fakecluster import EXIT, JobRun, match_pod_failure_policy
from opkit import JOBS, condition, wait_for
from polya_operator import resources as r
from polya_trainer import spec as s

META = {"name": "r1", "namespace": "default", "uid": "1234"}


def rendered(stage: str = "rl", **stages: Any) -> dict[str, Any]:
    sp = s.parse_spec({"model": {"name": "org/m"}, "stages": stages})
    return r.job(META, sp, "vanilla", stage, 0)


def pod(step: str, index: int = 0) -> dict[str, Any]:
    code, reason = EXIT[step]
    status: dict[str, Any] = {"phase": "Failed" if code else "Succeeded", "containerStatuses": [
        {"name": "trainer", "state": {"terminated": {"exitCode": code, "reason": reason}}}]}
    if step == "preempt":
        status["conditions"] = [{"type": "DisruptionTarget", "status": "True"}]
    return {"metadata": {"name": f"p{index}", "namespace": "default"}, "status": status}


def outcome(job: dict[str, Any], steps: list[str]) -> tuple[JobRun, list[bool]]:
    run = JobRun("j", job["spec"], [steps])
    return run, [run.judge(0, pod(step)) for step in steps]


def test_rendered_policy_ignores_disruptions_and_fails_on_exit_code_2():
    job = rendered()
    action, why = match_pod_failure_policy(job["spec"]["podFailurePolicy"], pod("exit2"))
    assert action == "FailJob" and "exit code 2 matching FailJob rule at index 1" in why
    assert match_pod_failure_policy(job["spec"]["podFailurePolicy"], pod("preempt"))[0] == \
        "Ignore"
    run, done = outcome(job, ["preempt", "preempt", "succeed"])
    assert done == [False, False, True] and run.failed == 0 and run.verdict is None


def test_rendered_backoff_limit_zero_fails_at_the_first_counted_failure():
    """The planner retries, not the Job: backoffLimit 0 (resources.py)."""
    run, done = outcome(rendered(), ["oom"])
    assert done == [True] and run.verdict[0] == "BackoffLimitExceeded" and run.failed == 1


def test_a_container_that_succeeds_is_never_matched_by_exit_code_rules():
    """pod_failure_policy.go looks only at containers that terminated with a non-zero code:
    a NotIn rule that lists no 0 must not match a success."""
    policy = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "NotIn",
                                                              "values": [42]}}]}
    assert match_pod_failure_policy(policy, pod("succeed")) == ("Count", "")
    assert match_pod_failure_policy(policy, pod("fail"))[0] == "FailJob"


def test_rendered_sharded_job_retries_each_index_on_its_own_budget():
    job = rendered("generate", generate={"shards": 4, "backoffLimit": 1})
    spec = job["spec"]
    assert (spec["backoffLimitPerIndex"], spec["maxFailedIndexes"]) == (1, 2)
    assert "backoffLimit" not in spec
    run = JobRun("j", spec, [[] for _ in range(4)])
    # index 1 fails twice (its budget is 1 retry), index 3 once then succeeds
    assert run.judge(1, pod("fail", 1)) is False
    assert run.judge(1, pod("fail", 1)) is True and run.failed_indexes == {1}
    assert run.judge(3, pod("fail", 3)) is False and run.judge(3, pod("succeed", 3)) is True
    assert run.verdict is None and run.failed == 3
    assert run.status()["failedIndexes"] == "1" and run.status()["completedIndexes"] == "3"
    for i in (0, 2):  # a third failed index is more than maxFailedIndexes (2)
        run.judge(i, pod("fail", i))
        run.judge(i, pod("fail", i))
    assert run.verdict[0] == "MaxFailedIndexesExceeded"


@pytest.mark.parametrize("mode", ["ReadWriteMany", "ReadWriteOnce"])
def test_failed_index_fails_the_sharded_stage_without_a_new_attempt(make_cluster,
                                                                    start_operator, mode):
    """One index spends its budget: the Job ends FailedIndexes (every index finished, one
    failed), with FailureTarget before Failed, and the planner starts no new attempt. On a
    ReadWriteOnce claim the indices are bound to one node (a required pod affinity among the
    attempt's own pods; no scheduler here, so its effect is not exercised)."""
    cluster = make_cluster(outcomes=lambda n: {1: ["fail", "fail"]} if n.endswith(
        "generate-0") else ["succeed"])
    start_operator()
    cluster.create_run("shard", {"arms": ["polya"], "storage": {"accessMode": mode},
                                 "stages": {"generate": {"shards": 3, "backoffLimit": 1}}})
    wait_for(lambda: condition(cluster.run("shard"), "Failed").get("status") == "True", 60,
             "the run to fail")
    job = cluster.call("GET", f"{JOBS}/shard-polya-generate-0")[1]
    conds = [c["type"] for c in job["status"]["conditions"]]
    assert conds == ["FailureTarget", "Failed"], conds
    assert job["status"]["conditions"][1]["reason"] == "FailedIndexes"
    assert (job["status"]["failedIndexes"], job["status"]["completedIndexes"]) == ("1", "0,2")
    pods = cluster.list("/api/v1/namespaces/default/pods")
    assert sorted(p["metadata"]["annotations"][
        "batch.kubernetes.io/job-completion-index"] for p in pods) == ["0", "1", "1", "2"]
    assert cluster.jobs("shard") == ["shard-polya-generate-0"]
    affinity = job["spec"]["template"]["spec"].get("affinity") or {}
    terms = (affinity.get("podAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution") or []
    assert [t["topologyKey"] for t in terms] == (
        ["kubernetes.io/hostname"] if mode == "ReadWriteOnce" else []), affinity
    stage = cluster.run("shard")["status"]["stages"][0]
    assert stage["attempts"] == 1 and stage["reason"] == "FailedIndexes", stage


def test_a_pod_evicted_during_midtrain_is_replaced_not_counted(make_cluster, start_operator):
    """kubectl drain's Eviction API on the midtrain pod: the pod gets DisruptionTarget, the
    rendered podFailurePolicy ignores it, a new pod of the same attempt runs (where the
    trainer resumes from its checkpoint: tests/trainer/test_midtrain.py's SIGTERM cases)."""
    cluster = make_cluster(outcomes=lambda n: ["hang", "succeed"] if n.endswith(
        "midtrain-0") else ["succeed"])
    start_operator()
    cluster.create_run("ev", {"arms": ["polya"], "stages": {"midtrain": {"backoffLimit": 0}}})
    wait_for(lambda: "ev-polya-midtrain-0" in cluster.fake.started, 30, "the midtrain pod")
    pods = "/api/v1/namespaces/default/pods"
    (pod,) = [p["metadata"]["name"] for p in cluster.list(pods)
              if p["metadata"]["name"].startswith("ev-polya-midtrain-0")]
    code, body = cluster.call("POST", f"{pods}/{pod}/eviction", {
        "apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod}})
    assert code == 201, body
    wait_for(lambda: condition(cluster.run("ev"), "Succeeded").get("status") == "True", 60,
             "the run to succeed")
    stage = next(st for st in cluster.run("ev")["status"]["stages"] if st["name"] == "midtrain")
    assert stage["attempts"] == 1 and stage["metrics"]["preemptions"] == 1.0, stage
    assert "ev-polya-midtrain-1" not in cluster.jobs("ev")
    names = [p["metadata"]["name"] for p in cluster.list(pods)]
    assert pod not in names and sum(n.startswith("ev-polya-midtrain-0") for n in names) == 1
