"""Stage faults, the full matrix: each ends in the right status (retried, not counted, or
failed with its reason) and frees the GPUs (no Job of the run left active, no pod Pending or
Running; a suspended Job counts as freed).

The real operator (kopf in a thread) against the filled kmock emulator; what each Job's pod
does is scripted for the FAKE Job controller/kubelet of tests/operator/fakecluster.py (exit
codes, OOMKilled, DisruptionTarget, DeadlineExceeded). One emulator and one operator serve
every case (one run per case), which keeps the matrix at a few seconds.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from relkit import Cluster, condition, figures, finished, free_port, harness, wait_for

RESULTS: dict[str, dict[str, Any]] = {}


@dataclass
class Case:
    spec: dict[str, Any]
    script: dict[str, list[str]]  # job-name suffix -> outcomes (default: succeed)
    run: str  # Succeeded | Failed
    reason: str = ""  # the run's Failed reason
    stage: str = "vanilla/rl"  # the stage checked below
    state: str = "Succeeded"
    attempts: int = 1
    preemptions: float = 0.0
    jobs: list[str] = field(default_factory=list)  # suffixes of every Job created


ONE = {"arms": ["vanilla"], "stages": {"rl": {"backoffLimit": 1}}}
CASES: dict[str, Case] = {
    "exit1-retried": Case(ONE, {"vanilla-rl-0": ["fail"]}, "Succeeded", attempts=2,
                          jobs=["vanilla-evaluate-0", "vanilla-rl-0", "vanilla-rl-1"]),
    "exit1-exhausted": Case(ONE, {"vanilla-rl-0": ["fail"], "vanilla-rl-1": ["fail"]},
                            "Failed", "BackoffLimitExceeded", state="Failed", attempts=2,
                            jobs=["vanilla-rl-0", "vanilla-rl-1"]),
    "exit2-invalid-config": Case(ONE, {"vanilla-rl-0": ["exit2"]}, "Failed", "InvalidConfig",
                                 state="Failed", attempts=1, jobs=["vanilla-rl-0"]),
    "oom-retried": Case(ONE, {"vanilla-rl-0": ["oom"]}, "Succeeded", attempts=2,
                        jobs=["vanilla-evaluate-0", "vanilla-rl-0", "vanilla-rl-1"]),
    "oom-exhausted": Case(ONE, {"vanilla-rl-0": ["oom"], "vanilla-rl-1": ["oom"]}, "Failed",
                          "OOMKilled", state="Failed", attempts=2,
                          jobs=["vanilla-rl-0", "vanilla-rl-1"]),
    "preempted-not-counted": Case(
        {"arms": ["vanilla"], "stages": {"rl": {"backoffLimit": 0}}},
        {"vanilla-rl-0": ["preempt", "preempt", "preempt", "succeed"]}, "Succeeded",
        preemptions=3.0, jobs=["vanilla-evaluate-0", "vanilla-rl-0"]),
    "stage-deadline": Case({"arms": ["vanilla"], "stages": {"rl": {
        "backoffLimit": 0, "activeDeadlineSeconds": 30}}}, {"vanilla-rl-0": ["deadline"]},
        "Failed", "DeadlineExceeded", state="Failed", jobs=["vanilla-rl-0"]),
    "run-deadline": Case({"arms": ["vanilla"], "activeDeadlineSeconds": 2},
                         {"vanilla-rl-0": ["hang"]}, "Failed", "DeadlineExceeded",
                         state="Failed", jobs=[]),  # the hanging Job is deleted
    "one-arm-fails-other-stopped": Case(
        {"arms": ["vanilla", "polya"]},
        {"vanilla-rl-0": ["exit2"], "polya-generate-0": ["hang"]}, "Failed", "InvalidConfig",
        state="Failed", jobs=["vanilla-rl-0"]),  # polya's running Job is deleted
}


def _outcomes(job: str) -> list[str]:
    run, _, suffix = job.partition("-")  # run names carry no dash: "c3"
    case = CASES[NAMES[run]]
    return list(case.script.get(suffix, ["succeed"]))


NAMES = {f"c{i}": name for i, name in enumerate(CASES)}
RUN_OF = {name: run for run, name in NAMES.items()}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    from polya_operator import kube

    cluster = Cluster(outcomes=_outcomes, delay=0.2).start()
    old = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(cluster.kubeconfig(tmp_path_factory.mktemp("kc") / "kc"))
    kube.forget()
    op = harness.Operator(free_port(), resync=0.5, watch_check=0)
    try:
        yield cluster
    finally:
        op.stop()
        cluster.stop()
        if old is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = old
        kube.forget()


def gpus_in_use(cluster: Cluster, run: str) -> list[str]:
    """Jobs of the run still holding pods: not finished and not suspended, or with a pod
    Pending/Running."""
    busy = []
    for job in cluster.list(f"/apis/batch/v1/namespaces/default/jobs?labelSelector="
                            f"polya.dev/run%3D{run}"):
        done = any(condition(job, c).get("status") == "True" for c in ("Complete", "Failed"))
        if not done and not (job.get("spec") or {}).get("suspend"):
            busy.append(job["metadata"]["name"])
    for pod in cluster.list(f"/api/v1/namespaces/default/pods?labelSelector="
                            f"polya.dev/run%3D{run}"):
        if (pod.get("status") or {}).get("phase") in ("Pending", "Running"):
            busy.append(pod["metadata"]["name"])
    return busy


@pytest.mark.parametrize("case", list(CASES))
def test_stage_fault(world: Cluster, case: str) -> None:
    c = CASES[case]
    run = RUN_OF[case]
    world.create_run(run, c.spec)
    wait_for(lambda: finished(world, run), 60, f"{case} to finish")
    # Freed: nothing of the run holds a GPU once it has finished (allow the deletes).
    wait_for(lambda: gpus_in_use(world, run) == [], 20, f"{case}: GPUs freed")
    body = world.run(run)
    if c.run == "Succeeded":
        assert condition(body, "Succeeded")["status"] == "True", body["status"]
    else:
        assert condition(body, "Failed")["status"] == "True", body["status"]
        assert condition(body, "Failed")["reason"] == c.reason, body["status"]
    stages = {f"{x['arm']}/{x['name']}": x for x in body["status"]["stages"]}
    st = stages[c.stage]
    assert st["state"] == c.state and st["attempts"] == c.attempts, st
    assert st.get("metrics", {}).get("preemptions", 0.0) == c.preemptions, st
    if c.state == "Failed":
        assert st["reason"] == c.reason and st["message"], st
    assert world.jobs(run) == sorted(f"{run}-{j}" for j in c.jobs)
    RESULTS[case] = {"run": c.run, "reason": c.reason or "Completed",
                     "attempts": st["attempts"], "preemptions": st.get("metrics", {}).get(
                         "preemptions", 0.0), "gpus_freed": True}
    if len(RESULTS) == len(CASES):
        figures("stage-faults", {"cases": RESULTS, "count": len(RESULTS)})
