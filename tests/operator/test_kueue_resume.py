"""Suspend and resume a run queued through Kueue (issue 27): the resume is a new attempt,
created only after the stopped attempt's pod is gone.

There is no Kueue here: the test admits each Job as Kueue does, by setting its
``spec.suspend`` to false (kueue pkg/controller/jobframework/reconciler.go, startJob; the
Job integration's RunWithPodSetsInfo unsuspends it). The fake Job controller keeps a deleted
Job's pod terminating while ``hold_termination`` is set, as the kubelet does during the grace
period."""

from __future__ import annotations

from typing import Any

from opkit import JOBS, condition, reconciled_again, wait_for

PODS = "/api/v1/namespaces/default/pods"


def admit(cluster: Any, name: str) -> None:
    """Kueue's admission of a queued Job: it is unsuspended."""
    wait_for(lambda: cluster.call("GET", f"{JOBS}/{name}")[0] == 200, 60, f"Job {name}")
    assert cluster.call("GET", f"{JOBS}/{name}")[1]["spec"]["suspend"] is True  # queued
    code, body = cluster.call("PATCH", f"{JOBS}/{name}", {"spec": {"suspend": False}},
                              "application/merge-patch+json")
    assert code == 200, body


def pods_of(cluster: Any, job: str) -> list[dict[str, Any]]:
    return cluster.list(f"{PODS}?labelSelector=batch.kubernetes.io/job-name%3D{job}")


def stage(cluster: Any, run: str, name: str) -> dict[str, Any]:
    return next(x for x in cluster.run(run)["status"]["stages"] if x["name"] == name)


def test_a_kueue_resume_is_a_new_attempt_after_the_old_pod_is_gone(make_cluster,
                                                                     start_operator):
    cluster = make_cluster(outcomes=lambda n: ["hang"] if n.endswith("rl-0") else ["succeed"])
    op = start_operator()
    cluster.create_run("kq", {"arms": ["vanilla"], "queueName": "gpu"})
    admit(cluster, "kq-vanilla-rl-0")
    wait_for(lambda: cluster.fake and "kq-vanilla-rl-0" in cluster.fake.started, 30, "pod")
    cluster.fake.hold_termination = True  # the old pod stays terminating
    cluster.patch_run("kq", {"spec": {"suspend": True}})
    wait_for(lambda: cluster.jobs("kq") == [], 30, "the Job deleted (Kueue owns its suspend)")
    (old,) = wait_for(lambda: [p for p in pods_of(cluster, "kq-vanilla-rl-0")
                               if p["metadata"].get("deletionTimestamp")], 30,
                      "the old pod terminating")
    cluster.patch_run("kq", {"spec": {"suspend": False}})
    wait_for(lambda: stage(cluster, "kq", "rl")["reason"] == "Terminating", 30,
             "the stage waiting for the old pod")
    reconciled_again(cluster, op, "kq")
    # The old pod is still there: no new attempt yet.
    assert cluster.jobs("kq") == []
    assert [p["metadata"]["name"] for p in pods_of(cluster, "kq-vanilla-rl-0")] == \
        [old["metadata"]["name"]]
    assert "to terminate" in stage(cluster, "kq", "rl")["message"]
    cluster.fake.hold_termination = False
    admit(cluster, "kq-vanilla-rl-1")  # a new attempt, queued again
    admit(cluster, "kq-vanilla-evaluate-0")
    wait_for(lambda: condition(cluster.run("kq"), "Succeeded").get("status") == "True", 60,
             "the run to succeed")
    rl = stage(cluster, "kq", "rl")
    assert rl["attempts"] == 2 and rl["jobName"] == "kq-vanilla-rl-1"
    assert cluster.jobs("kq") == ["kq-vanilla-evaluate-0", "kq-vanilla-rl-1"]
    assert condition(cluster.run("kq"), "Suspended")["status"] == "False"
