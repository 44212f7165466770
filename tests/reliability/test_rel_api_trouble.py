"""API trouble: the emulator cuts the operator's watch connections and answers its requests
with 500s and 429s (Retry-After: 1) for a while, while the FAKE Job controller keeps moving
Jobs; the operator must recover and miss no transition. And a silently stalled watch (the
connection stays open, no events come) must turn the operator's /healthz to 503.

The operator is the real one (kopf in a thread, HTTP to the filled kmock emulator)."""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytest
from relkit import (  # noqa: F401  (fixtures)
    ALL_STAGES,
    TWO_ARMS,
    condition,
    emu_control,
    emu_state,
    figures,
    http_status,
    jobs_created,
    make_cluster_fixture,
    start_operator_fixture,
    succeeded,
    wait_for,
)

TROUBLE_SECONDS = 3.0
EPISODES = [  # (name, cut the watches, fault codes)
    ("watch-drop", True, ()),
    ("http-500", False, (500,)),
    ("http-429", False, (429,)),
    ("drop+500+429", True, (500, 429)),
]


def stage_states(cluster: Any, name: str) -> dict[str, str]:
    st = (cluster.run(name) or {}).get("status") or {}
    return {f"{x['arm']}/{x['name']}": x["state"] for x in st.get("stages") or []}


def complete_jobs(cluster: Any, name: str) -> set[str]:
    """(arm/stage) of the run's Jobs the fake controller has completed."""
    out = set()
    for job in cluster.list(f"/apis/batch/v1/namespaces/default/jobs?labelSelector="
                            f"polya.dev/run%3D{name}"):
        if condition(job, "Complete").get("status") == "True":
            lab = job["metadata"]["labels"]
            out.add(f"{lab['polya.dev/arm']}/{lab['polya.dev/stage']}")
    return out


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_watch_drops_500s_and_429s_recovered_without_missing_a_transition(
        make_cluster, start_operator) -> None:
    cluster = make_cluster(delay=0.4)
    start_operator()
    recovery: dict[str, float] = {}
    served_before = 0
    for i, (kind, drop, codes) in enumerate(EPISODES):
        name = f"t{i}"
        cluster.create_run(name, TWO_ARMS)
        wait_for(lambda n=name: len(stage_states(cluster, n)) == 6 and "Running" in
                 stage_states(cluster, n).values(), 30, "a stage running")
        before = stage_states(cluster, name)
        # Trouble: cut the watches and/or fail every operator request for a while.
        if drop:
            emu_control(cluster, "drop")
        if codes:
            emu_control(cluster, "fail", codes=list(codes), seconds=TROUBLE_SECONDS)
        end = time.monotonic() + TROUBLE_SECONDS
        while time.monotonic() < end:
            if drop:  # keep cutting: reconnects during the window are cut again
                emu_control(cluster, "drop")
            time.sleep(0.25)
        # Transitions that happened during the trouble (Jobs completed meanwhile).
        done = complete_jobs(cluster, name)
        missed = {k for k in done if before.get(k) != "Succeeded"}
        assert missed, "the trouble window saw no transition to catch up on"
        t_end = time.monotonic()
        wait_for(lambda n=name, m=missed: all(stage_states(cluster, n).get(k) == "Succeeded"
                                              for k in m), 60, f"recovery after {kind}")
        recovery[kind] = round(time.monotonic() - t_end, 3)
        wait_for(lambda n=name: succeeded(cluster, n), 90, f"{name} to succeed after {kind}")
        state = emu_state(cluster)
        served = sum(state["faults"].values())
        if codes:
            assert served > served_before, "no fault was injected"
        served_before = served

    created = jobs_created(cluster)
    for i in range(len(EPISODES)):
        run = cluster.run(f"t{i}")
        assert [f"{x['arm']}/{x['name']}" for x in run["status"]["stages"]] == ALL_STAGES
        for x in run["status"]["stages"]:
            assert x["state"] == "Succeeded" and x["attempts"] == 1 and x["outputs"], (i, x)
        assert condition(run, "Failed")["status"] == "False"
    assert all(n == 1 for n in created.values()), created
    assert len(created) == 6 * len(EPISODES)
    figures("api-trouble", {
        "trouble_seconds": TROUBLE_SECONDS, "episodes": [e[0] for e in EPISODES],
        "recovery_seconds": recovery,
        "recovery_seconds_max": max(recovery.values()),
        "recovery_seconds_median": statistics.median(recovery.values()),
        "faults_served": emu_state(cluster)["faults"], "runs_succeeded": len(EPISODES),
        "duplicate_jobs": sum(1 for n in created.values() if n != 1),
        "note": "recovery = end of trouble -> status shows every stage that finished during it",
    })


@pytest.mark.timeout(180)
def test_stalled_watch_makes_liveness_fail(make_cluster, start_operator) -> None:
    cluster = make_cluster(delay=0.2)
    op = start_operator(watch_check=0.5)
    healthz = f"http://127.0.0.1:{op.metrics_port}/healthz"
    wait_for(lambda: http_status(healthz) == 200, 30, "healthy operator")
    # Normal operation: healthy throughout (no false alarm while the run moves).
    cluster.create_run("calm", {"arms": ["polya"]})
    samples = []
    while not succeeded(cluster, "calm"):
        samples.append(http_status(healthz))
        time.sleep(0.1)
    time.sleep(1.5)
    samples.append(http_status(healthz))
    assert set(samples) == {200}, samples

    # kopf's watches stay connected but go silent; the runs keep changing.
    emu_control(cluster, "stall", agents=["kopf"])
    t_stall = time.monotonic()
    cluster.create_run("unseen", {"arms": ["polya"]})
    wait_for(lambda: http_status(healthz) == 503, 30, "/healthz to report the stall")
    detect = time.monotonic() - t_stall
    assert cluster.jobs("unseen") == []  # the operator indeed saw nothing
    assert "polyarun_watch_stalled 1.0" in op.metrics()

    # The kubelet restarts the unhealthy pod: a fresh operator lists everything again.
    emu_control(cluster, "stall", agents=[])
    op.stop()
    op2 = start_operator(watch_check=0.5)
    wait_for(lambda: succeeded(cluster, "unseen"), 60, "the unseen run to succeed")
    wait_for(lambda: http_status(f"http://127.0.0.1:{op2.metrics_port}/healthz") == 200, 30,
             "healthy again")
    figures("watch-stall", {"check_interval_seconds": 0.5,
                            "detected_after_seconds": round(detect, 2),
                            "healthy_samples_before_stall": len(samples),
                            "false_alarms": 0, "run_after_restart": "Succeeded"})
