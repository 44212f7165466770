"""A sweep PolyaRun under the real operator (kopf) against the emulator and the fake Job
controller: one child PolyaRun per variant on the parent's workspace, the first one alone
until its generate stage is done (on ReadWriteOnce, every variant alone), the parent's
status aggregating them, and the report Job at the end (tests/trainer/test_sweep_run.py runs
its command on real variant outputs)."""

from __future__ import annotations

import pytest
from opkit import JOBS, RUNS, condition, wait_for


@pytest.mark.parametrize("mode", ["ReadWriteMany", "ReadWriteOnce"])
def test_sweep_creates_children_and_aggregates(make_cluster, start_operator, mode):
    cluster = make_cluster()
    start_operator()
    parent = cluster.create_run("abl", {"arms": ["polya"], "seed": 9,
                                        "sweep": {"heuristicsCount": [1, 2], "seeds": [1, 2]},
                                        "storage": {"accessMode": mode}})
    names = ["abl-h1-s1", "abl-h1-s2", "abl-h2-s1", "abl-h2-s2"]
    wait_for(lambda: condition(cluster.run("abl"), "Succeeded").get("status") == "True", 90,
             "the sweep to succeed")
    run = cluster.run("abl")
    sweep = run["status"]["sweep"]
    assert (sweep["variants"], sweep["created"], sweep["succeeded"], sweep["failed"]) == (
        4, 4, 4, 0)
    assert [(c["name"], c["heuristics"], c["seed"], c["state"]) for c in sweep["children"]] == [
        ("abl-h1-s1", 1, 1, "Succeeded"), ("abl-h1-s2", 1, 2, "Succeeded"),
        ("abl-h2-s1", 2, 1, "Succeeded"), ("abl-h2-s2", 2, 2, "Succeeded")]
    assert run["status"]["progress"] == 100.0
    assert condition(run, "Failed")["status"] == "False"

    # The parent runs one Job, the report, once every variant has succeeded; each child is
    # an ordinary run on the parent's claim.
    assert cluster.jobs("abl") == ["abl-report"]
    assert run["status"]["report"] == "report/sweep.md"
    assert cluster.fake.started[-1] == "abl-report"
    _, job = cluster.call("GET", f"{JOBS}/abl-report")
    assert job["metadata"]["ownerReferences"][0]["uid"] == parent["metadata"]["uid"]
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == [
        "python", "-m", "polya_trainer.cli", "sweep-report", "--spec", "/etc/polya/run.yaml",
        "--workdir", "/workspace/abl", "--variants", "/workspace"]
    assert container["image"] == "trainer:test"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts == {"spec": "/etc/polya", "workspace": "/workspace", "tmp": "/tmp"}
    assert volumes["workspace"]["persistentVolumeClaim"] == {"claimName": "abl-workspace"}
    _, snapshot = cluster.call("GET", "/api/v1/namespaces/default/configmaps/"
                               + volumes["spec"]["configMap"]["name"])
    assert "sweep" in snapshot["data"]["run.yaml"]  # the sweep's own spec: its variants
    assert not pod["automountServiceAccountToken"]
    claims = [c["metadata"]["name"]
              for c in cluster.list("/api/v1/namespaces/default/persistentvolumeclaims")]
    assert claims == ["abl-workspace"]
    # The later variants' reconcile creates the claim again: 409, then the owner check reads
    # it back (a get the chart must grant, issue 27; the emulator enforces the chart's RBAC).
    state = cluster.counts()
    assert [n for rk, _ns, name, n in state["created"] if name == "abl-workspace"] == [1]
    assert ["polya-operator", "get", "", "persistentvolumeclaims"] in [
        r[:4] for r in state["requests"]]
    assert state["forbidden"] == []
    children = {c["metadata"]["name"]: c for c in cluster.list(
        RUNS + "?labelSelector=polya.dev%2Fsweep%3Dabl")}
    assert sorted(children) == names
    for name, child in children.items():
        meta, spec = child["metadata"], child["spec"]
        assert meta["ownerReferences"][0]["uid"] == parent["metadata"]["uid"]
        assert "sweep" not in spec
        assert spec["storage"]["pvc"] == "abl-workspace"
        assert spec["stages"]["generate"]["seed"] == 9  # one generation for every variant
        assert spec["heuristics"]["count"] == 2
        assert (spec["stages"]["midtrain"]["heuristicsCount"], spec["seed"]) == (
            int(name[5]), int(name[-1]))
        assert condition(child, "Succeeded")["status"] == "True"
    # The first child's generate finished before any other child started a Job.
    started = cluster.fake.started
    first_gen = started.index("abl-h1-s1-polya-generate-0")
    assert all(not job.startswith(tuple(names[1:])) for job in started[:first_gen + 1])
    assert {j for j in started if j.startswith("abl-h2-s2-")} >= {
        "abl-h2-s2-polya-generate-0", "abl-h2-s2-polya-evaluate-0"}
    if mode == "ReadWriteOnce":  # one node's claim: one variant at a time (sweep.py)
        owners = [next(n for n in names if job.startswith(n + "-")) for job in started[:-1]]
        assert owners == sorted(owners, key=names.index), owners
