"""The planner's rules under the local executor (engine/local.py: real child processes), and
the same scenario table under the Kubernetes executor's observation
(polya_operator.executor.observe_job), as tests/unit/test_planner.py feeds it.

Children are tiny ``python -c`` scripts: they log their start and end, write a progress
file, then succeed (writing a manifest), fail (exit 1), fail for good (exit 2) or sleep.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from polya_operator import executor as x
from polya_operator import resources as r
from polya_trainer import spec as s
from polya_trainer.engine import local
from polya_trainer.engine import planner as p

CHILD = r"""
import json, os, sys, time
from pathlib import Path
arm, stage, attempt, outcome, workdir = sys.argv[1:6]
def log(what):
    with open(Path(workdir) / "calls.log", "a") as f:
        f.write(f"{arm} {stage} {attempt} {what} {time.time()}\n")
log("start")
doc = {"stage": stage, "arm": arm, "state": "Running", "progress": 50.0, "etaSeconds": 3.0,
       "metrics": {"loss": 0.5}, "message": "half way"}
Path(os.environ["POLYA_PROGRESS_FILE"]).write_text(json.dumps(doc))
kind, _, arg = outcome.partition(":")
if kind == "sleep":
    time.sleep(float(arg))
code = {"fail": 1, "bad": 2}.get(kind, 0)
if code == 0:
    from polya_trainer.runtime.artifacts import write_manifest
    d = Path(workdir) / arm / stage
    d.mkdir(parents=True, exist_ok=True)
    (d / "out.txt").write_text(attempt)
    write_manifest(d, outputs={"out": str(d / "out.txt")})
    doc.update(state="Succeeded", progress=100.0, message="")
else:
    doc.update(state="Failed", reason="InvalidConfig" if code == 2 else "RuntimeError",
               message=f"boom {attempt}")
Path(os.environ["POLYA_TERMINATION_MESSAGE_PATH"]).write_text(json.dumps(doc))
log("end")
sys.exit(code)
"""

Outcomes = dict[tuple[str, str, int], str]  # (arm, stage, attempt) -> ok | fail | bad | sleep:S


def make_run(arms: list[str], name: str = "t", **spec: Any) -> s.PolyaRun:
    return s.parse_run({"apiVersion": s.API_VERSION, "kind": s.KIND, "metadata": {"name": name},
                        "spec": {"model": {"name": "m"}, "arms": arms, **spec}})


def local_runner(run: s.PolyaRun, workdir: Path, outcomes: Outcomes,
                 parallel: int | None = 1) -> local.Runner:
    def command(a: p.StartAttempt, spec_path: Path, wd: Path) -> list[str]:
        outcome = outcomes.get((a.arm, a.stage, a.attempt), "ok")
        return [sys.executable, "-c", CHILD, a.arm, a.stage, str(a.attempt), outcome, str(wd)]

    return local.Runner(run, workdir, list(run.spec.arms), quiet=True, parallel=parallel,
                        command=command)


def calls(workdir: Path) -> list[tuple[str, str, int, str, float]]:
    path = workdir / "calls.log"
    rows = [line.split() for line in path.read_text().splitlines()] if path.exists() else []
    return [(a, st, int(n), what, float(t)) for a, st, n, what, t in rows]


def run_local(run: s.PolyaRun, workdir: Path, outcomes: Outcomes,
              parallel: int | None = 1) -> tuple[int, s.PolyaRunStatus]:
    code = local_runner(run, workdir, outcomes, parallel).execute()
    status = s.PolyaRunStatus.model_validate(json.loads((workdir / "status.json").read_text()))
    return code, status


# --------------------------------------------------------------------------- the cluster side

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def k8s_job(a: p.StartAttempt, outcome: str, done: bool) -> dict[str, Any]:
    """A child Job as the API server returns it: running, or finished per the outcome."""
    st: dict[str, Any] = {"startTime": p.iso(T0), "ready": 1}
    pods: list[dict[str, Any]] = []
    if done and outcome.split(":")[0] in ("ok", "sleep"):
        st = {"conditions": [{"type": "Complete", "status": "True"}],
              "completionTime": p.iso(T0)}
    elif done:
        term = {"stage": a.stage, "arm": a.arm, "state": "Failed",
                "message": f"boom {a.attempt}"}
        reason = "PodFailurePolicy" if outcome == "bad" else "BackoffLimitExceeded"
        st = {"conditions": [{"type": "Failed", "status": "True", "reason": reason}]}
        pods = [{"metadata": {"creationTimestamp": p.iso(T0)}, "status": {
            "phase": "Failed", "containerStatuses": [{"name": "trainer", "state": {
                "terminated": {"exitCode": 2 if outcome == "bad" else 1,
                               "message": json.dumps(term)}}}]}}]
    job = {"metadata": {"name": a.name, "creationTimestamp": p.iso(T0), "labels": {
        r.LABEL_RUN: a.name.rsplit("-", 3)[0], r.LABEL_ARM: a.arm, r.LABEL_STAGE: a.stage,
        r.LABEL_ATTEMPT: str(a.attempt)}}, "spec": {"suspend": False}, "status": st}
    return {"job": job, "pods": pods}


def run_k8s(run: s.PolyaRun, outcomes: Outcomes, parallel: int | None = 1,
            ) -> tuple[int, s.PolyaRunStatus, list[list[str]]]:
    """Reconcile until the run finishes: a Job created in one reconcile has finished (per
    its outcome) by the next. Returns the exit code the local runner would give, the status
    and the names started per reconcile."""
    body = {"metadata": {"name": run.metadata.name, "generation": 1},
            "spec": run.spec.model_dump(mode="json", by_alias=True, exclude_none=True),
            "status": {}}
    jobs: dict[str, tuple[p.StartAttempt, str]] = {}
    running: set[str] = set()
    waves: list[list[str]] = []
    for tick in range(40):
        objs = [k8s_job(a, o, a.name not in running) for a, o in jobs.values()]
        running.clear()
        attempts = [x.observe_job(o["job"], o["pods"]) for o in objs]
        plan = p.plan(body, attempts, T0 + timedelta(seconds=tick),
                      policy=p.Policy(parallel), parsed=x.parse(body["spec"]))
        body["status"] = plan.status.dump()
        for a in plan.of(p.StopAttempt):
            jobs.pop(a.name, None)
        started = plan.of(p.StartAttempt)
        waves.append([a.name for a in started])
        for a in started:
            jobs[a.name] = (a, outcomes.get((a.arm, a.stage, a.attempt), "ok"))
            running.add(a.name)
        if p.finished(plan.status):
            break
    state = p.run_state(plan.status)
    return {"Succeeded": 0, "Failed": 1}.get(state, 130), plan.status, waves


def summary(code: int, st: s.PolyaRunStatus) -> dict[str, Any]:
    """What both executors must agree on."""
    return {"code": code, "run": p.run_state(st),
            "stages": [(e.arm, e.name, str(e.state), e.reason, e.attempts) for e in st.stages],
            "completed": {c.type: c.status for c in st.conditions if c.type.endswith("Completed")}}


# --------------------------------------------------------------------------- the scenario table

SCENARIOS: dict[str, tuple[dict[str, Any], Outcomes, dict[str, Any]]] = {
    "success in order": ({}, {}, {
        "code": 0, "run": "Succeeded",
        "stages": [("vanilla", "rl", "Succeeded", "JobComplete", 1),
                   ("vanilla", "evaluate", "Succeeded", "JobComplete", 1)]}),
    "retried then succeeds": ({"rl": {"backoffLimit": 2}}, {
        ("vanilla", "rl", 0): "fail", ("vanilla", "rl", 1): "fail"}, {
        "code": 0, "run": "Succeeded",
        "stages": [("vanilla", "rl", "Succeeded", "JobComplete", 3),
                   ("vanilla", "evaluate", "Succeeded", "JobComplete", 1)]}),
    "retries exhausted": ({"rl": {"backoffLimit": 1}}, {
        ("vanilla", "rl", 0): "fail", ("vanilla", "rl", 1): "fail"}, {
        "code": 1, "run": "Failed",
        "stages": [("vanilla", "rl", "Failed", "BackoffLimitExceeded", 2),
                   ("vanilla", "evaluate", "Pending", None, 0)]}),
    "exit code 2 is not retried": ({"rl": {"backoffLimit": 3}}, {
        ("vanilla", "rl", 0): "bad"}, {
        "code": 1, "run": "Failed",
        "stages": [("vanilla", "rl", "Failed", "InvalidConfig", 1),
                   ("vanilla", "evaluate", "Pending", None, 0)]}),
}


@pytest.mark.parametrize("executor", ["local", "kubernetes"])
@pytest.mark.parametrize("case", list(SCENARIOS))
def test_scenario_table(case: str, executor: str, tmp_path: Path) -> None:
    stages, outcomes, want = SCENARIOS[case]
    run = make_run(["vanilla"], stages=stages)
    if executor == "local":
        code, st = run_local(run, tmp_path, outcomes)
    else:
        code, st, _ = run_k8s(run, outcomes)
    got = summary(code, st)
    assert {k: got[k] for k in want} == want
    if want["run"] == "Failed":
        failed = next(e for e in st.stages if e.state == "Failed")
        # (The operator reports exit code 2 with the Job's PodFailurePolicy message.)
        if executor == "local" or failed.reason != "InvalidConfig":
            assert f"boom {failed.attempts - 1}" in (failed.message or "")
        assert p.condition(st, "Failed").reason == failed.reason
        assert got["completed"] == {"RLCompleted": "False", "EvaluateCompleted": "False"}
    else:
        assert got["completed"] == {"RLCompleted": "True", "EvaluateCompleted": "True"}
    if executor == "local":  # each attempt really ran, in order, once
        ran = [(a, st_, n) for a, st_, n, what, _ in calls(tmp_path) if what == "start"]
        expect = [(a, e, n) for a, e, _, _, attempts in want["stages"]
                  for n in range(attempts)]
        assert ran == expect
        assert all((tmp_path / "logs" / f"t-{a}-{e}-{n}.log").is_file() for a, e, n in ran)


def test_both_executors_agree_on_every_scenario(tmp_path: Path) -> None:
    for i, (case, (stages, outcomes, _)) in enumerate(SCENARIOS.items()):
        run = make_run(["vanilla", "polya"], stages=stages)
        code, st = run_local(run, tmp_path / str(i), outcomes)
        k_code, k_st, _ = run_k8s(run, outcomes)
        assert summary(code, st) == summary(k_code, k_st), case


# --------------------------------------------------------------------------- concurrency


def _overlap(rows: list[tuple[str, str, int, str, float]]) -> bool:
    """Whether the two arms' spans (first start to last end) overlap."""
    spans: dict[str, list[float]] = {}
    for arm, _, _, _, t in rows:
        spans.setdefault(arm, []).append(t)
    (a0, a1), (b0, b1) = [(min(v), max(v)) for v in spans.values()]
    return a0 < b1 and b0 < a1


@pytest.mark.parametrize("parallel", [1, 2])
def test_max_parallel_arms(parallel: int, tmp_path: Path) -> None:
    run = make_run(["vanilla", "star"])
    slow = {("vanilla", "rl", 0): "sleep:0.8", ("star", "generate", 0): "sleep:0.8"}
    code, st = run_local(run, tmp_path, slow, parallel=parallel)
    assert code == 0 and p.run_state(st) == "Succeeded"
    rows = calls(tmp_path)  # vanilla: rl, evaluate; star: generate, midtrain, rl, evaluate
    assert len(rows) == 12 and _overlap(rows) is (parallel == 2)
    # The cluster side starts the same number of arms in its first reconcile.
    _, _, waves = run_k8s(run, slow, parallel=parallel)
    assert len(waves[0]) == parallel


# --------------------------------------------------------------------------- live progress


def _in_thread(runner: local.Runner) -> tuple[threading.Thread, list[int]]:
    codes: list[int] = []
    t = threading.Thread(target=lambda: codes.append(runner.execute()), daemon=True)
    t.start()
    return t, codes


def _wait(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def _status(workdir: Path) -> s.PolyaRunStatus:
    try:
        return s.PolyaRunStatus.model_validate_json((workdir / "status.json").read_text())
    except (FileNotFoundError, ValueError):
        return s.PolyaRunStatus()


def test_progress_file_feeds_the_status_and_ctrl_c_suspends(tmp_path: Path) -> None:
    run = make_run(["vanilla"])
    runner = local_runner(run, tmp_path, {("vanilla", "rl", 0): "sleep:30"})
    thread, codes = _in_thread(runner)
    _wait(lambda: any(e.progress == 50.0 for e in _status(tmp_path).stages))
    st = _status(tmp_path)
    rl = st.stages[0]
    assert (rl.state, rl.eta_seconds, rl.metrics) == ("Running", 3.0, {"loss": 0.5})
    assert st.current_stage == "vanilla/rl" and st.progress == 25.0
    assert p.condition(st, "Running").status == "True"
    runner.interrupt.count = 1  # Ctrl-C: the planner suspends, the child gets SIGTERM
    thread.join(10)
    assert codes == [local.EXIT_INTERRUPTED]
    st = _status(tmp_path)
    assert [str(e.state) for e in st.stages] == ["Suspended", "Pending"]
    assert p.condition(st, "Suspended").reason == "Interrupted"
    assert p.run_state(st) == "Suspended" and not p.finished(st)
    # The same command again resumes the same attempt (no new attempt number).
    code, st = run_local(run, tmp_path, {})
    assert code == 0 and [e.attempts for e in st.stages] == [1, 1]
    starts = [c[:3] for c in calls(tmp_path) if c[3] == "start"]
    assert starts == [("vanilla", "rl", 0), ("vanilla", "rl", 0), ("vanilla", "evaluate", 0)]


# --------------------------------------------------------------------------- restart, deadline


def test_restart_resumes_numbers_and_keeps_finished_stages(tmp_path: Path) -> None:
    run = make_run(["polya"], stages={"midtrain": {"backoffLimit": 0}})
    code, st = run_local(run, tmp_path, {("polya", "midtrain", 0): "fail"})
    assert code == 1 and [str(e.state) for e in st.stages] == [
        "Succeeded", "Failed", "Pending", "Pending"]
    # Rerun (the failure fixed): generate is not run again; midtrain's attempt is 1.
    code, st = run_local(run, tmp_path, {})
    assert code == 0 and p.run_state(st) == "Succeeded"
    starts = [c[1:3] for c in calls(tmp_path) if c[3] == "start"]
    assert starts == [("generate", 0), ("midtrain", 0), ("midtrain", 1), ("rl", 0),
                      ("evaluate", 0)]
    assert [e.attempts for e in st.stages] == [1, 2, 1, 1]
    assert (tmp_path / "logs" / "t-polya-midtrain-1.log").is_file()
    # A finished run does nothing more; a stage whose manifest was removed runs again.
    assert run_local(run, tmp_path, {})[0] == 0
    assert len(calls(tmp_path)) == 10
    (tmp_path / "polya" / "rl" / "MANIFEST.json").unlink()
    code, st = run_local(run, tmp_path, {})
    assert code == 0 and [c[1:3] for c in calls(tmp_path)][-2:] == [("rl", 1), ("rl", 1)]


def test_active_deadline_stops_the_run(tmp_path: Path) -> None:
    run = make_run(["vanilla"], activeDeadlineSeconds=1)
    # The child would sleep for 10 minutes: only the deadline can end it before pytest's
    # timeout, and its log shows that it never finished (no wall-clock bound needed).
    code, st = run_local(run, tmp_path, {("vanilla", "rl", 0): "sleep:600"})
    assert code == 1
    assert p.condition(st, "Failed").reason == "DeadlineExceeded"
    assert (st.stages[0].state, st.stages[0].reason) == ("Failed", "DeadlineExceeded")
    assert [c[3] for c in calls(tmp_path)] == ["start"]  # stopped, never finished
    assert not list((tmp_path / ".polya" / "attempts").glob("*.json"))  # removed, as a Job
    # The cluster side decides the same once the deadline has passed.
    body = {"metadata": {"name": "t", "generation": 1}, "spec": {
        "model": {"name": "m"}, "arms": ["vanilla"], "activeDeadlineSeconds": 1},
        "status": {"startTime": p.iso(T0)}}
    a = p.StartAttempt("vanilla", "rl", 0, "t-vanilla-rl-0")
    job = k8s_job(a, "sleep:30", done=False)
    plan = p.plan(body, [x.observe_job(job["job"])], T0 + timedelta(seconds=2))
    assert plan.of(p.StopAttempt) == [p.StopAttempt("t-vanilla-rl-0")]
    assert p.condition(plan.status, "Failed").reason == "DeadlineExceeded"
