"""The operator (kopf, for real) against the filled kmock emulator over HTTP, with the FAKE Job
controller of fakecluster.py moving Jobs and pods (there is no kube-controller-manager here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from opkit import JOBS, RUNS, condition, free_port, reconciled_again, wait_for

TWO_ARMS = {"arms": ["vanilla", "polya"]}
ALL = ["vanilla/rl", "vanilla/evaluate", "polya/generate", "polya/midtrain", "polya/rl",
       "polya/evaluate"]


def succeeded(cluster, name):
    return condition(cluster.run(name), "Succeeded").get("status") == "True"


def failed(cluster, name):
    return condition(cluster.run(name), "Failed").get("status") == "True"


def _metrics_or_none(op: Any) -> str | None:
    try:
        return op.metrics()
    except OSError:  # not listening yet
        return None


def _value(metrics: str, sample: str) -> float:
    """The value of one sample in a /metrics text (0 when absent)."""
    for line in metrics.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return 0.0


def test_happy_path_two_arms_all_stages(make_cluster, start_operator):
    cluster = make_cluster()
    op = start_operator()
    # Counters are process-wide (earlier tests may have moved them): read them once the
    # operator's metrics server is up.
    before = wait_for(lambda: _metrics_or_none(op), 30, "the metrics endpoint")
    cluster.create_run("happy", TWO_ARMS)
    wait_for(lambda: succeeded(cluster, "happy"), 60, "the run to succeed")
    run = cluster.run("happy")
    st = run["status"]
    assert [f"{x['arm']}/{x['name']}" for x in st["stages"]] == ALL
    assert all(x["state"] == "Succeeded" and x["attempts"] == 1 for x in st["stages"])
    assert st["progress"] == 100.0 and st["observedGeneration"] == 1
    assert all(x["outputs"] == {"dir": "out"} for x in st["stages"])  # termination message
    assert condition(run, "GenerateCompleted")["status"] == "True"
    assert cluster.jobs("happy") == sorted(f"happy-{x.replace('/', '-')}-0" for x in ALL)
    # Stages ran in order within each arm.
    started = cluster.fake.started
    assert started.index("happy-polya-generate-0") < started.index("happy-polya-midtrain-0") \
        < started.index("happy-polya-rl-0") < started.index("happy-polya-evaluate-0")
    # The children: spec ConfigMap and workspace claim, owned by the run.
    cms = cluster.list("/api/v1/namespaces/default/configmaps")
    assert [c["metadata"]["name"] for c in cms] == ["happy-spec"]
    assert cms[0]["metadata"]["ownerReferences"][0]["uid"] == run["metadata"]["uid"]
    reasons = [e["reason"] for e in cluster.list("/api/v1/namespaces/default/events")]
    assert reasons.count("StageStarted") == 6 and reasons.count("StageSucceeded") == 6
    # Metrics endpoint shows the run.
    text = op.metrics()
    for sample in ('polyarun_runs_finished_total{result="Succeeded"}',
                   'polyarun_jobs_created_total{stage="generate"}'):
        assert _value(text, sample) - _value(before, sample) == 1.0, sample
    assert 'polyarun_reconcile_total{controller="polyarun",result="success"}' in text
    assert "polyarun_build_info{" in text


def test_retry_then_success(make_cluster, start_operator):
    cluster = make_cluster(outcomes=lambda n: ["fail"] if n == "retry-vanilla-rl-0"
                           else ["succeed"])
    op = start_operator()
    cluster.create_run("retry", {"arms": ["vanilla"]})
    wait_for(lambda: succeeded(cluster, "retry"), 60, "the run to succeed")
    rl = cluster.run("retry")["status"]["stages"][0]
    assert rl["attempts"] == 2 and rl["jobName"] == "retry-vanilla-rl-1"
    assert cluster.jobs("retry") == ["retry-vanilla-evaluate-0", "retry-vanilla-rl-0",
                                     "retry-vanilla-rl-1"]
    assert 'polyarun_stage_retries_total{reason="BackoffLimitExceeded",stage="rl"} 1.0' \
        in op.metrics()


def test_retries_exhausted_fail_with_reason(make_cluster, start_operator):
    cluster = make_cluster(outcomes=lambda n: ["oom"])
    op = start_operator()
    cluster.create_run("oom", {"arms": ["vanilla"], "stages": {"rl": {"backoffLimit": 1}}})
    wait_for(lambda: failed(cluster, "oom"), 60, "the run to fail")
    run = cluster.run("oom")
    assert condition(run, "Failed")["reason"] == "OOMKilled"
    assert condition(run, "Succeeded") | {"status": "False"} == condition(run, "Succeeded")
    assert cluster.jobs("oom") == ["oom-vanilla-rl-0", "oom-vanilla-rl-1"]
    reconciled_again(cluster, op, "oom")  # reconciled once more: still no new Job
    assert cluster.jobs("oom") == ["oom-vanilla-rl-0", "oom-vanilla-rl-1"]


def test_preemption_is_not_counted(make_cluster, start_operator):
    cluster = make_cluster(outcomes=lambda n: ["preempt", "preempt", "succeed"]
                           if n.endswith("rl-0") else ["succeed"])
    op = start_operator()
    cluster.create_run("pre", {"arms": ["vanilla"], "stages": {"rl": {"backoffLimit": 0}}})
    wait_for(lambda: succeeded(cluster, "pre"), 60, "the run to succeed")
    rl = cluster.run("pre")["status"]["stages"][0]
    assert rl["attempts"] == 1 and rl["metrics"]["preemptions"] == 2.0
    assert cluster.jobs("pre") == ["pre-vanilla-evaluate-0", "pre-vanilla-rl-0"]
    assert 'polyarun_stage_preemptions_total{stage="rl"}' in op.metrics()


def test_suspend_and_resume(make_cluster, start_operator):
    cluster = make_cluster(outcomes=lambda n: ["hang", "succeed"] if n.endswith("rl-0")
                           else ["succeed"])
    start_operator()
    cluster.create_run("sus", {"arms": ["vanilla"]})
    wait_for(lambda: cluster.fake and "sus-vanilla-rl-0" in cluster.fake.started, 30, "pod")
    cluster.patch_run("sus", {"spec": {"suspend": True}})
    wait_for(lambda: condition(cluster.run("sus"), "Suspended").get("status") == "True", 30,
             "Suspended")
    wait_for(lambda: cluster.call("GET", f"{JOBS}/sus-vanilla-rl-0")[1]["spec"].get("suspend"),
             30, "the Job suspended")
    assert condition(cluster.run("sus"), "Running")["status"] == "False"
    cluster.patch_run("sus", {"spec": {"suspend": False}})
    wait_for(lambda: succeeded(cluster, "sus"), 60, "the run to succeed")
    rl = cluster.run("sus")["status"]["stages"][0]
    assert rl["attempts"] == 1  # the same attempt resumed
    assert condition(cluster.run("sus"), "Suspended")["status"] == "False"


def test_run_deadline(make_cluster, start_operator):
    cluster = make_cluster(outcomes=lambda n: ["hang"])
    start_operator()
    cluster.create_run("late", {"arms": ["vanilla"], "activeDeadlineSeconds": 2})
    wait_for(lambda: failed(cluster, "late"), 30, "the run to fail")
    assert condition(cluster.run("late"), "Failed")["reason"] == "DeadlineExceeded"
    wait_for(lambda: cluster.jobs("late") == [], 20, "the active Job deleted")


def test_stage_deadline_is_a_failure_with_its_reason(make_cluster, start_operator):
    cluster = make_cluster(outcomes=lambda n: ["deadline"])
    start_operator()
    cluster.create_run("sdl", {"arms": ["vanilla"], "stages": {"rl": {
        "backoffLimit": 0, "activeDeadlineSeconds": 60}}})
    wait_for(lambda: failed(cluster, "sdl"), 30, "the run to fail")
    assert condition(cluster.run("sdl"), "Failed")["reason"] == "DeadlineExceeded"
    job = cluster.call("GET", f"{JOBS}/sdl-vanilla-rl-0")[1]
    assert job["spec"]["activeDeadlineSeconds"] == 60


def test_deletion_mid_run_removes_children(make_cluster, start_operator):
    cluster = make_cluster(outcomes=lambda n: ["hang"])
    start_operator()
    cluster.create_run("gone", {**TWO_ARMS, "storage": {"accessMode": "ReadWriteMany"}})
    wait_for(lambda: len(cluster.jobs("gone")) == 2, 30, "two Jobs (parallel arms)")
    wait_for(lambda: cluster.list("/api/v1/namespaces/default/persistentvolumeclaims"), 30,
             "the claim (created after the Jobs)")
    code, _ = cluster.call("DELETE", "/apis/polya.dev/v1alpha1/namespaces/default/"
                           "polyaruns/gone")
    assert code == 200
    wait_for(lambda: cluster.jobs("gone") == [], 30, "Jobs removed")
    wait_for(lambda: cluster.list("/api/v1/namespaces/default/pods") == [], 30, "pods removed")
    wait_for(lambda: cluster.list("/api/v1/namespaces/default/configmaps") == [], 30,
             "the ConfigMap collected (asynchronously)")
    # The workspace claim (the trained models) outlives the run: storage.whenDeleted Retain.
    claims = cluster.list("/api/v1/namespaces/default/persistentvolumeclaims")
    assert [c["metadata"]["name"] for c in claims] == ["gone-workspace"]
    assert "ownerReferences" not in claims[0]["metadata"]


def test_deleting_the_claim_with_the_run_is_opt_in(make_cluster, start_operator):
    cluster = make_cluster(outcomes=lambda n: ["hang"])
    start_operator()
    cluster.create_run("drop", {"arms": ["vanilla"], "storage": {"whenDeleted": "Delete"}})
    claims = "/api/v1/namespaces/default/persistentvolumeclaims"
    wait_for(lambda: cluster.list(claims), 30, "the claim")
    cluster.call("DELETE", "/apis/polya.dev/v1alpha1/namespaces/default/polyaruns/drop")
    wait_for(lambda: cluster.list(claims) == [], 30, "the claim collected with its run")


def test_only_our_children_are_listed_and_watched(make_cluster, start_operator):
    """kopf filters handlers' ``labels=`` on the client; the operator sets
    settings.watching.label_selectors so the API server filters (the emulator applies
    labelSelector to list and watch as the API server does and records what it sent)."""
    cluster = make_cluster()
    for i in range(3):  # somebody else's workloads in the same namespace
        cluster.call("POST", "/api/v1/namespaces/default/pods",
                     {"metadata": {"name": f"other-{i}", "labels": {"app": "web"}}})
        cluster.call("POST", JOBS, {"metadata": {"name": f"other-job-{i}"}, "spec": {}})
    start_operator()
    cluster.create_run("ours", {"arms": ["vanilla"]})
    wait_for(lambda: succeeded(cluster, "ours"), 60, "the run to succeed")
    state = cluster.counts()
    sels = {(agent, verb, plural): set(v) for agent, verb, plural, v in state["selectors"]}
    for plural in ("jobs", "pods"):
        for verb in ("list", "watch"):
            got = sels.get(("kopf", verb, plural))
            if got is not None:
                assert got == {"polya.dev/run"}, (verb, plural, got)
        assert ("kopf", "watch", plural) in sels
    served = {(agent, plural): set(v) for agent, plural, v in state["served"]}
    for plural in ("jobs", "pods"):
        names = served.get(("kopf", plural), set())
        assert names and not {n for n in names if n.startswith("other-")}, names


def test_a_stuck_pod_shows_in_status_and_events(make_cluster, start_operator):
    """A pod the kubelet cannot start (its status as pkg/kubelet/images/types.go writes it:
    waiting ImagePullBackOff) is named in the stage's message and a Warning Event."""
    cluster = make_cluster(outcomes=lambda n: ["hang"])
    start_operator(resync=30.0)  # the pod's watch event alone must be enough
    cluster.create_run("stuck", {"arms": ["vanilla"]})
    wait_for(lambda: "stuck-vanilla-rl-0" in cluster.fake.started, 30, "the pod")
    pods = cluster.list("/api/v1/namespaces/default/pods")
    pod = next(p["metadata"]["name"] for p in pods if p["metadata"]["name"].startswith(
        "stuck-vanilla-rl-0"))
    cluster.call("PATCH", f"{JOBS}/stuck-vanilla-rl-0/status",
                 {"status": {"active": 1, "ready": 0}}, "application/merge-patch+json")
    cluster.call("PATCH", f"/api/v1/namespaces/default/pods/{pod}/status", {"status": {
        "phase": "Pending", "containerStatuses": [{"name": "trainer", "ready": False,
                                                   "state": {"waiting": {
                                                       "reason": "ImagePullBackOff",
                                                       "message": 'Back-off pulling image '
                                                                  '"trainer:typo"'}}}]}},
                 "application/merge-patch+json")

    def stage() -> dict:
        return (cluster.run("stuck").get("status") or {}).get("stages", [{}])[0]

    wait_for(lambda: stage().get("reason") == "ImagePullBackOff", 20, "the stage's reason")
    assert "trainer:typo" in stage()["message"]
    events = cluster.list("/api/v1/namespaces/default/events")
    assert [e for e in events if e["reason"] == "ImagePullBackOff" and e["type"] == "Warning"]


BAD_EVALUATE = {"model": {"name": "org/model"},
                "stages": {"evaluate": {"k": [128], "samples": 4}}}


def test_api_server_refuses_an_invalid_spec_naming_the_field(make_cluster, start_operator):
    cluster = make_cluster()
    start_operator()
    code, body = cluster.call("POST", RUNS, {"apiVersion": "polya.dev/v1alpha1",
                                             "kind": "PolyaRun", "metadata": {"name": "bad"},
                                             "spec": BAD_EVALUATE})
    assert code == 422 and body["reason"] == "Invalid", body
    assert [c["field"] for c in body["details"]["causes"]] == ["spec.stages.evaluate"]
    assert "every k must be at most samples" in body["message"]
    assert cluster.run("bad") is None and cluster.jobs("bad") == []


def test_invalid_spec_creates_no_job(make_cluster, start_operator):
    """A run the CRD refuses now, stored before its rule existed (an older CRD: written
    straight into the emulator's store, past admission): the operator's own validation fails
    it, naming the field."""
    cluster = make_cluster()
    op = start_operator()
    cluster.call("POST", "/_emu/seed", {"resource": "polya.dev/v1alpha1/polyaruns",
                                        "count": 1, "prefix": "bad-", "spec": BAD_EVALUATE})
    wait_for(lambda: failed(cluster, "bad-0"), 30, "InvalidSpec")
    cond = condition(cluster.run("bad-0"), "Failed")
    assert cond["reason"] == "InvalidSpec" and "spec.stages.evaluate" in cond["message"]
    assert condition(cluster.run("bad-0"), "Succeeded")["reason"] == "InvalidSpec"
    reconciled_again(cluster, op, "bad-0")
    assert cluster.jobs("bad-0") == []
    assert cluster.list("/api/v1/namespaces/default/configmaps") == []


def test_operator_killed_mid_stage_restarts_without_duplicates(make_cluster, tmp_path):
    """kopf in a subprocess, killed with SIGKILL while a stage runs, then started again."""
    cluster = make_cluster(outcomes=lambda n: ["hang", "succeed"] if n.endswith("generate-0")
                           else ["succeed"])
    kubeconfig = cluster.kubeconfig(tmp_path / "kc")
    root = Path(__file__).resolve().parents[2]
    env = {"KUBECONFIG": str(kubeconfig), "POLYA_RESYNC_SECONDS": "0.5",
           "POLYA_OPERATOR_METRICS_PORT": str(free_port()), "PATH": "/usr/bin:/bin",
           "PYTHONPATH": f"{root}/operator:{root}/trainer"}

    def start() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "polya_operator.main", "-n", "default"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    proc = start()
    try:
        cluster.create_run("crash", {"arms": ["polya"]})
        wait_for(lambda: "crash-polya-generate-0" in cluster.fake.started, 60, "first pod")
        wait_for(lambda: (cluster.run("crash").get("status") or {}).get("currentStage"), 30,
                 "status written")
        proc.kill()
        proc.wait(10)
        # While the operator is down the stage is suspended and resumed (pod restarts),
        # then completes: the restarted operator must carry on from the existing Job.
        cluster.call("PATCH", f"{JOBS}/crash-polya-generate-0", {"spec": {"suspend": True}},
                     "application/merge-patch+json")
        wait_for(lambda: condition(cluster.call("GET", f"{JOBS}/crash-polya-generate-0")[1],
                                   "Suspended").get("status") == "True", 30,
                 "the fake Job controller to suspend the Job")
        cluster.call("PATCH", f"{JOBS}/crash-polya-generate-0", {"spec": {"suspend": False}},
                     "application/merge-patch+json")
        proc = start()
        wait_for(lambda: succeeded(cluster, "crash"), 90, "the run to succeed")
    finally:
        proc.kill()
        proc.wait(10)
    assert cluster.jobs("crash") == ["crash-polya-evaluate-0", "crash-polya-generate-0",
                                     "crash-polya-midtrain-0", "crash-polya-rl-0"]
    posts = cluster.counts()["counts"].get("create jobs", 0)
    assert posts <= 5  # 4 Jobs, at most one idempotent re-create answered 409


def test_delete_and_recreate_with_the_same_name(make_cluster, start_operator):
    """Garbage collection is asynchronous (the emulator's follows
    pkg/controller/garbagecollector: dependents go a while after their owner): the old run's
    Jobs, pods and ConfigMap linger when a namesake is created. The new run must not take the
    old Jobs' states as its own, and a 409 on a child owned by the old run is not success:
    it waits, then creates its own."""
    cluster = make_cluster()
    cluster.call("POST", "/_emu/gc", {"delay": 3.0})
    start_operator()
    cluster.create_run("again", {"arms": ["vanilla"], "storage": {"whenDeleted": "Delete"}})
    wait_for(lambda: succeeded(cluster, "again"), 60, "the first run to succeed")
    old_uid = cluster.run("again")["metadata"]["uid"]
    assert old_uid
    code, _ = cluster.call("DELETE", "/apis/polya.dev/v1alpha1/namespaces/default/"
                           "polyaruns/again")
    assert code == 200
    new_uid = cluster.create_run("again", {"arms": ["vanilla"], "seed": 7,
                                           "storage": {"whenDeleted": "Delete"}})[
        "metadata"]["uid"]
    assert cluster.jobs("again")  # the old Jobs are still there (GC has not run yet)

    def owners() -> dict[str, str]:
        jobs = cluster.list(JOBS + "?labelSelector=polya.dev/run%3Dagain")
        return {j["metadata"]["name"]: j["metadata"]["ownerReferences"][0]["uid"]
                for j in jobs}

    # The new run's first Job, created once the old one is gone (not adopted before).
    assert set(owners().values()) == {old_uid}
    wait_for(lambda: owners() == {"again-vanilla-rl-0": new_uid}, 30, "the new run's Job")
    run = wait_for(lambda: (cluster.run("again") or {}).get("status", {}).get("stages") and
                   cluster.run("again"), 30, "the new run's status")
    assert condition(run, "Succeeded").get("status") != "True", run["status"]
    rl = run["status"]["stages"][0]
    assert rl["state"] in ("Pending", "Running") and rl["attempts"] == 1, rl
    cms = cluster.list("/api/v1/namespaces/default/configmaps")
    assert [c["metadata"]["ownerReferences"][0]["uid"] for c in cms] == [new_uid]
    assert '"seed": 7' in cms[0]["data"]["run.yaml"]
    # The new Job came after the new ConfigMap (resourceVersions are ordered): its pods can
    # only ever mount the new run's spec, never the old one's lingering under the same name.
    job = cluster.call("GET", f"{JOBS}/again-vanilla-rl-0")[1]
    assert int(cms[0]["metadata"]["resourceVersion"]) < int(job["metadata"]["resourceVersion"])
    # (The fake Job controller drives each Job name once, so the new Job is not run here.)


def test_next_attempt_waits_for_the_failed_pods_to_terminate(make_cluster, start_operator):
    """The Job controller (pkg/controller/job/job_controller.go, syncJob) marks a failing Job
    FailureTarget at once and Failed only when its pods have terminated; the status is
    written here the way it writes it (status.terminating counts the pods still going)."""
    cluster = make_cluster(outcomes=lambda n: ["hang"] if n.endswith("rl-0") else ["succeed"])
    op = start_operator()
    cluster.create_run("ft", {"arms": ["vanilla"]})
    wait_for(lambda: "ft-vanilla-rl-0" in cluster.fake.started, 30, "the first pod")
    pods = "/api/v1/namespaces/default/pods"
    pod = next(p["metadata"]["name"] for p in cluster.list(pods)
               if p["metadata"]["name"].startswith("ft-vanilla-rl-0"))
    target = {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
              "message": "Job has reached the specified backoff limit"}
    cluster.call("PATCH", f"{JOBS}/ft-vanilla-rl-0/status", {"status": {
        "active": 0, "ready": 0, "terminating": 1, "conditions": [target]}},
        "application/merge-patch+json")
    wait_for(lambda: cluster.run("ft")["status"]["stages"][0].get("reason") == "Terminating",
             30, "the stage to show the terminating pod")
    reconciled_again(cluster, op, "ft")  # the pod is still terminating: no next attempt
    assert cluster.jobs("ft") == ["ft-vanilla-rl-0"]
    stage = cluster.run("ft")["status"]["stages"][0]
    assert stage["reason"] == "Terminating", stage
    # The pod is gone: Failed is added, and only now the next attempt starts.
    cluster.call("PATCH", f"{pods}/{pod}/status", {"status": {"phase": "Failed"}},
                 "application/merge-patch+json")
    cluster.call("PATCH", f"{JOBS}/ft-vanilla-rl-0/status", {"status": {
        "terminating": 0, "failed": 1, "conditions": [target, {**target, "type": "Failed"}]}},
        "application/merge-patch+json")
    wait_for(lambda: "ft-vanilla-rl-1" in cluster.jobs("ft"), 30, "the next attempt")
    wait_for(lambda: succeeded(cluster, "ft"), 60, "the run to succeed")
