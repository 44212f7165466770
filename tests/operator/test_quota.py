"""ResourceQuota refusals show in status, and the run goes on once the quota allows it.

The emulator enforces quota on create as the ResourceQuota admission plugin does (emu.py
``_quota``); the fake Job controller turns a refused pod into the Job controller's
FailedCreate event (fakecluster.py). Nothing here runs a real kube-apiserver.
"""

from __future__ import annotations

from opkit import JOBS, condition, wait_for

QUOTAS = "/api/v1/namespaces/default/resourcequotas"


def _quota(cluster, hard: dict[str, str]) -> None:
    code, body = cluster.call("POST", QUOTAS, {"metadata": {"name": "team"},
                                               "spec": {"hard": hard}})
    assert code == 201, body


def _stage(cluster, name: str) -> dict:
    stages = ((cluster.run(name) or {}).get("status") or {}).get("stages") or [{}]
    return stages[0]


def _succeeded(cluster, name: str) -> bool:
    return condition(cluster.run(name), "Succeeded").get("status") == "True"


def test_a_job_refused_by_quota_says_so_in_status(make_cluster, start_operator):
    cluster = make_cluster()
    _quota(cluster, {"count/jobs.batch": "0"})
    start_operator()
    cluster.create_run("q", {"arms": ["vanilla"]})
    wait_for(lambda: _stage(cluster, "q").get("reason") == "QuotaExceeded", 30,
             "the refusal in status")
    stage = _stage(cluster, "q")
    assert stage["state"] == "Pending", stage
    assert 'jobs.batch "q-vanilla-rl-0" is forbidden: exceeded quota: team' in stage["message"]
    assert cluster.jobs("q") == []
    assert cluster.call("DELETE", f"{QUOTAS}/team")[0] == 200
    wait_for(lambda: _succeeded(cluster, "q"), 60, "the run to succeed once quota allows")
    rl = cluster.run("q")["status"]["stages"][0]
    assert rl["attempts"] == 1 and rl["jobName"] == "q-vanilla-rl-0", rl


def test_pods_refused_by_quota_show_the_job_controllers_reason(make_cluster, start_operator):
    """The Job is admitted, its pods are not (a GPU quota): upstream this is only a
    FailedCreate event on the Job, which the operator reads into the stage's status."""
    cluster = make_cluster()
    _quota(cluster, {"requests.nvidia.com/gpu": "1"})
    start_operator()
    cluster.create_run("g", {"arms": ["vanilla"], "stages": {"rl": {"resources": {"gpus": 2}}}})
    wait_for(lambda: _stage(cluster, "g").get("reason") == "FailedCreate", 30,
             "the pod refusal in status")
    stage = _stage(cluster, "g")
    assert "exceeded quota: team, requested: requests.nvidia.com/gpu=2" in stage["message"]
    assert cluster.jobs("g") == ["g-vanilla-rl-0"]
    job = cluster.call("GET", f"{JOBS}/g-vanilla-rl-0")[1]
    assert not (job.get("status") or {}).get("conditions"), "quota is not a Job condition"
    cluster.call("PATCH", f"{QUOTAS}/team", {"spec": {"hard": {"requests.nvidia.com/gpu": "2"}}},
                 "application/merge-patch+json")
    wait_for(lambda: _succeeded(cluster, "g"), 60, "the run to succeed once quota allows")
    assert cluster.run("g")["status"]["stages"][0]["attempts"] == 1
