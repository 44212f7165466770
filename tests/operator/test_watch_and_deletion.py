"""Watches that end (410 Expired, timeoutSeconds), BOOKMARK events, and deletion with each
propagation policy, in the emulator (emu.py) and as the operator meets them.

Cases follow the API concepts page ("Efficient detection of changes": 410 Gone after
compaction, bookmarks) and the garbage collection page (the three propagation policies).
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from opkit import JOBS, RUNS, condition, wait_for

PODS = "/api/v1/namespaces/default/pods"
MERGE = "application/merge-patch+json"


def _watch(cluster, path: str) -> list[dict[str, Any]]:
    """Every event of a watch, read until the server ends it."""
    with urllib.request.urlopen(cluster.url + path, timeout=30) as resp:
        return [json.loads(line) for line in resp if line.strip()]


def _run(name: str) -> dict[str, Any]:
    return {"apiVersion": "polya.dev/v1alpha1", "kind": "PolyaRun", "metadata": {"name": name},
            "spec": {"model": {"name": "org/model"}, "arms": ["vanilla"]}}


def test_a_watch_from_a_compacted_version_ends_with_410(make_cluster):
    cluster = make_cluster()
    _, made = cluster.call("POST", RUNS, _run("a"))
    old = made["metadata"]["resourceVersion"]
    cluster.patch_run("a", {"metadata": {"labels": {"x": "1"}}})
    cluster.call("POST", "/_emu/compact", {})
    events = _watch(cluster, f"{RUNS}?watch=true&resourceVersion={old}")
    assert [e["type"] for e in events] == ["ERROR"]
    assert (events[0]["object"]["code"], events[0]["object"]["reason"]) == (410, "Expired")


def test_watches_send_bookmarks_and_end_at_their_timeout(make_cluster):
    cluster = make_cluster()
    cluster.call("POST", RUNS, _run("a"))
    cluster.call("POST", "/_emu/compact", {"bookmarks": 0.2})
    events = _watch(cluster, f"{RUNS}?watch=true&allowWatchBookmarks=true&timeoutSeconds=2")
    assert events[0]["type"] == "ADDED"
    marks = [e for e in events if e["type"] == "BOOKMARK"]
    assert marks and set(marks[-1]["object"]) == {"kind", "apiVersion", "metadata"}
    assert int(marks[-1]["object"]["metadata"]["resourceVersion"]) >= int(
        events[0]["object"]["metadata"]["resourceVersion"])
    plain = _watch(cluster, f"{RUNS}?watch=true&timeoutSeconds=1")
    assert [e["type"] for e in plain] == ["ADDED"]  # none unless asked for


def test_the_operator_relists_after_410_and_misses_nothing(make_cluster, start_operator):
    """A run created while the operator's watch is silent, then compacted away: kopf's
    reconnect gets 410 (kopf/_cogs/clients/watching.py, continuous_watch), re-lists and
    finds it."""
    cluster = make_cluster()
    start_operator()
    cluster.create_run("first", {"arms": ["vanilla"]})
    wait_for(lambda: condition(cluster.run("first"), "Succeeded").get("status") == "True", 60,
             "the first run")
    cluster.call("POST", "/_emu/stall", {"agents": ["kopf"]})
    cluster.create_run("unseen", {"arms": ["vanilla"]})
    cluster.call("POST", "/_emu/compact", {})
    cluster.call("POST", "/_emu/stall", {"agents": []})
    cluster.call("POST", "/_emu/drop", {"agents": ["kopf"]})
    wait_for(lambda: condition(cluster.run("unseen"), "Succeeded").get("status") == "True", 60,
             "the run created during the silent watch")
    assert cluster.counts()["expired"].get("kopf", 0) >= 1


def _job_with_pod(cluster, name: str, pod_finalizers: list[str] | None = None) -> str:
    _, job = cluster.call("POST", JOBS, {"metadata": {"name": name}, "spec": {"template": {
        "metadata": {}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    meta: dict[str, Any] = {"name": f"{name}-pod", "ownerReferences": [{
        "apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": job["metadata"]["uid"],
        "controller": True, "blockOwnerDeletion": True}]}
    if pod_finalizers:
        meta["finalizers"] = pod_finalizers
    cluster.call("POST", PODS, {"metadata": meta, "spec": {}})
    return f"{name}-pod"


def test_deleting_a_job_honours_its_propagation_policy(make_cluster):
    cluster = make_cluster()
    # batch/v1 Jobs orphan their pods by default (pkg/registry/batch/job/strategy.go)
    pod = _job_with_pod(cluster, "orph")
    assert cluster.call("DELETE", f"{JOBS}/orph")[0] == 200
    left = cluster.call("GET", f"{PODS}/{pod}")[1]
    assert left["metadata"].get("ownerReferences") is None, left["metadata"]
    # Background: the Job goes now, its pod a moment later
    pod = _job_with_pod(cluster, "back")
    cluster.call("DELETE", f"{JOBS}/back", {"propagationPolicy": "Background"})
    assert cluster.call("GET", f"{JOBS}/back")[0] == 404
    wait_for(lambda: cluster.call("GET", f"{PODS}/{pod}")[0] == 404, 10, "the pod collected")
    # Foreground: the Job stays (deletionTimestamp, foregroundDeletion) until its pod is gone
    pod = _job_with_pod(cluster, "fore", ["example.com/hold"])
    cluster.call("DELETE", f"{JOBS}/fore", {"propagationPolicy": "Foreground"})
    job = cluster.call("GET", f"{JOBS}/fore")[1]
    assert job["metadata"]["deletionTimestamp"]
    assert "foregroundDeletion" in job["metadata"]["finalizers"]
    assert cluster.call("GET", f"{PODS}/{pod}")[1]["metadata"]["deletionTimestamp"]
    cluster.call("PATCH", f"{PODS}/{pod}", {"metadata": {"finalizers": None}}, MERGE)
    wait_for(lambda: cluster.call("GET", f"{JOBS}/fore")[0] == 404, 10, "the Job gone last")
