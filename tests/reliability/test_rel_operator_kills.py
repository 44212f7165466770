"""The operator SIGKILLed at 20 random (seeded) moments while runs are in flight, and started
again each time: every run finishes, no Job is ever created twice, no stage result is lost,
the final status is right.

The operator is the real one (kopf, `python -m polya_operator.main`) in a subprocess; the API
server is the filled kmock emulator, and a FAKE Job controller/kubelet (there is none here)
moves the Jobs it creates through Running to Complete with a termination message.
"""

from __future__ import annotations

import collections
import random
import time
from pathlib import Path

import pytest
from relkit import (  # noqa: F401  (fixtures)
    ALL_STAGES,
    TWO_ARMS,
    condition,
    emu_state,
    env_int,
    figures,
    finished,
    jobs_created,
    make_cluster_fixture,
    operator_process_fixture,
    reconciled_again,
    wait_for,
)

KILLS = env_int("POLYA_REL_KILLS", 20)
SEED = 20260509


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_operator_sigkilled_20_times_loses_and_duplicates_nothing(make_cluster, operator_process,
                                                                  tmp_path: Path) -> None:
    rng = random.Random(SEED)
    cluster = make_cluster(delay=0.5)
    kubeconfig = cluster.kubeconfig(tmp_path / "kc")
    runs: list[str] = []

    def active_run() -> str:
        """The newest run if unfinished, else a new one."""
        if not runs or finished(cluster, runs[-1]):
            runs.append(f"k{len(runs)}")
            cluster.create_run(runs[-1], TWO_ARMS)
        return runs[-1]

    t0 = time.monotonic()
    kills: list[dict] = []
    # KILLS kills that land while a run is in flight, however fast the machine: a kill that
    # comes after its run finished does not count, and the loop goes on (bounded).
    while sum(not k["run_finished"] for k in kills) < KILLS:
        assert len(kills) < 2 * KILLS, kills
        i = len(kills)
        name = active_run()
        op = operator_process(kubeconfig).start()
        early = rng.random() < 0.2  # some kills land during startup (initial listing)
        if early:
            time.sleep(rng.uniform(0.0, 1.5))
        else:
            wait_for(op.ready, 60, "operator ready")
            # Anchored to the run's progress, not to the clock: once its k-th Job exists,
            # then within the fake controller's step delay (a Job takes several), so the
            # kill lands while the run is in flight on a machine of any speed.
            k = rng.randint(1, len(ALL_STAGES))
            wait_for(lambda n=name, k=k: len(cluster.jobs(n)) >= k or finished(cluster, n),
                     120, f"{name}'s Job {k}")
            time.sleep(rng.uniform(0.0, 0.4))
        before = len(jobs_created(cluster))
        op.kill()
        stages = (cluster.run(name) or {}).get("status", {}).get("stages") or []
        kills.append({"i": i, "run": name, "early": early, "jobs": before,
                      "run_finished": finished(cluster, name),
                      "states": collections.Counter(x["state"] for x in stages)})
        time.sleep(rng.uniform(0.0, 0.5))  # down for a while; the fake controller goes on

    # Started once more and left alone: everything finishes.
    op = operator_process(kubeconfig).start()
    for name in runs:
        wait_for(lambda n=name: finished(cluster, n), 120, f"{name} to finish")
    settle = time.monotonic()
    for name in runs:  # each reconciled once more: still nothing new
        reconciled_again(cluster, op, name)
    op.kill()
    wall = time.monotonic() - t0

    created = jobs_created(cluster)
    expected = {f"{run}-{x.replace('/', '-')}-0" for run in runs for x in ALL_STAGES}
    duplicates = {n: c for n, c in created.items() if c != 1}
    per_stage = collections.Counter(n.rsplit("-", 1)[0] for n in created)
    state = emu_state(cluster)
    posts = state["counts"].get("create jobs", 0)
    events = [e for e in cluster.list("/api/v1/namespaces/default/events")]
    repeated_events = sum(n - 1 for n in collections.Counter(
        (e["involvedObject"]["name"], e["reason"], e["message"]) for e in events).values()
        if n > 1)

    for name in runs:
        run = cluster.run(name)
        st = run["status"]
        assert condition(run, "Succeeded")["status"] == "True", (name, st)
        assert condition(run, "Failed")["status"] == "False"
        assert condition(run, "Running")["status"] == "False"
        assert st["progress"] == 100.0 and st.get("currentStage") is None
        assert st["observedGeneration"] == 1
        assert [f"{x['arm']}/{x['name']}" for x in st["stages"]] == ALL_STAGES
        for x in st["stages"]:  # no stage result lost
            assert x["state"] == "Succeeded" and x["attempts"] == 1, x
            assert x["jobName"] == f"{name}-{x['arm']}-{x['name']}-0"
            assert x["outputs"] == {"dir": "out"} and x["metrics"].get("loss") == 0.25, x
        for stage in ("Generate", "Midtrain", "RL", "Evaluate"):
            assert condition(run, f"{stage}Completed")["status"] == "True"
    assert duplicates == {}, duplicates
    assert set(created) == expected, set(created) ^ expected  # no second attempt anywhere
    assert all(n == 1 for n in per_stage.values())
    during = sum(1 for k in kills if not k["run_finished"])
    assert during == KILLS

    figures("operator-kills", {
        "seed": SEED, "kills": len(kills), "kills_during_a_run": during,
        "kills_during_startup": sum(k["early"] for k in kills),
        "runs": len(runs), "runs_succeeded": len(runs), "arms": 2, "stages_per_run": 6,
        "jobs_created": len(created), "jobs_expected": len(expected),
        "duplicate_jobs": len(duplicates), "extra_attempts": len(created) - len(expected),
        "job_create_requests": posts, "idempotent_recreates_answered_409": posts - len(created),
        "repeated_events": repeated_events,
        "seconds_total": round(wall, 1), "seconds_after_last_restart": round(settle - t0, 1),
        "kill_log": [{**k, "states": dict(k["states"])} for k in kills],
    })
