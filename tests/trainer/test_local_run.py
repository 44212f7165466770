"""`polya run`: a whole PolyaRun on this machine, stopped and resumed.

The slow tests run the real stages (generate, midtrain, rl, evaluate) in child processes on
the toy model, with tiny numbers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from polya_trainer import spec as s
from polya_trainer.engine.local import (
    EXIT_INTERRUPTED,
    Runner,
    completed_condition,
    run_file,
)
from polya_trainer.runtime.artifacts import is_complete, read_manifest
from polya_trainer.runtime.workspace import STATUS_FILE, Workspace
from polya_trainer.toy import write_demo_data
from testkit import reduced_run

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- helpers


def write_run(tmp: Path, body: dict[str, Any]) -> Path:
    path = tmp / "run.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def status_of(workdir: Path) -> s.PolyaRunStatus:
    return s.PolyaRunStatus.model_validate(json.loads((workdir / STATUS_FILE).read_text()))


def cond(st: s.PolyaRunStatus, ctype: str) -> s.Condition:
    return next(c for c in st.conditions if c.type == ctype)


def polya_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "polya_trainer.cli", *args]


@pytest.fixture()
def data(tmp_path: Path) -> dict[str, Path]:
    return write_demo_data(tmp_path / "data", train=8, rl=16, evaluation=6)


# --------------------------------------------------------------------------- fast


def test_status_of_a_fresh_workdir_lists_every_arm_stage_pending(tmp_path: Path) -> None:
    """The planner's first plan for a fresh workdir (its actions not carried out). Live
    progress feeding the status: tests/unit/test_planner_local.py."""
    run = s.parse_run({"apiVersion": s.API_VERSION, "kind": s.KIND, "metadata": {"name": "x"},
                       "spec": {"model": {"name": "m"}, "arms": ["vanilla", "polya"]}})
    runner = Runner(run, tmp_path, ["vanilla", "polya"], quiet=True)
    runner._save(runner._plan().status)
    st = status_of(tmp_path)
    assert [(e.arm, e.name) for e in st.stages] == [
        ("vanilla", "rl"), ("vanilla", "evaluate"), ("polya", "generate"),
        ("polya", "midtrain"), ("polya", "rl"), ("polya", "evaluate")]
    assert all(e.state == s.StageState.PENDING for e in st.stages)
    # One arm at a time by default: only the vanilla arm's first stage is started.
    assert [e.job_name for e in st.stages] == ["x-vanilla-rl-0", None, None, None, None, None]
    assert cond(st, "Running").status == "True"
    assert cond(st, "Succeeded").status == "Unknown"
    assert cond(st, completed_condition("rl")).type == "RLCompleted"
    assert {c.type for c in st.conditions} >= {
        "Running", "Succeeded", "Failed", "Suspended", "GenerateCompleted",
        "MidtrainCompleted", "RLCompleted", "EvaluateCompleted"}
    assert st.observed_generation == 1 and st.progress == 0.0


def test_bad_file_and_unknown_arm_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: polya.dev/v1alpha1\nkind: PolyaRun\nmetadata: {name: x}\n"
                   "spec: {arms: [nope]}\n")
    assert run_file(bad, workdir=tmp_path / "w") == 2
    assert "spec.arms" in capsys.readouterr().err
    good = tmp_path / "good.yaml"
    good.write_text("apiVersion: polya.dev/v1alpha1\nkind: PolyaRun\nmetadata: {name: x}\n"
                    "spec: {arms: [vanilla]}\n")
    assert run_file(good, workdir=tmp_path / "w", arms=["polya"]) == 2


# --------------------------------------------------------------------------- slow, real stages


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_reduced_quickstart_end_to_end(tmp_path: Path, toy_model_dir: Path,
                                       data: dict[str, Path],
                                       capsys: pytest.CaptureFixture) -> None:
    """All stages of both arms, then a rerun that skips everything."""
    path = write_run(tmp_path, reduced_run("mini", toy_model_dir, data, ["vanilla", "polya"]))
    workdir = tmp_path / "work"
    assert run_file(path, workdir=workdir, quiet=True) == 0
    out = capsys.readouterr().out

    st = status_of(workdir)
    assert cond(st, "Succeeded").status == "True"
    assert cond(st, "Running").status == "False"
    assert cond(st, "Failed").status == "False"
    for stage in s.STAGES:
        assert cond(st, completed_condition(stage)).status == "True", stage
    assert len(st.stages) == 6
    for e in st.stages:
        assert e.state == s.StageState.SUCCEEDED, (e.arm, e.name, e.message)
        assert e.progress == 100.0 and e.attempts == 1
        assert e.start_time and e.completion_time and e.start_time <= e.completion_time
        assert e.outputs, (e.arm, e.name)
    assert st.progress == 100.0 and st.current_stage is None
    assert st.observed_generation == 1 and st.completion_time is not None

    # The dataset card of the polya arm's generated data.
    card = json.loads((workdir / "polya" / "generate" / "card.json").read_text())
    assert card["arm"] == "polya" and len(card["heuristics"]) == 2
    assert card["model"]["name"] == str(toy_model_dir)
    # Final models: mid-trained (polya) and RL-trained (both arms), complete and loadable.
    from transformers import AutoModelForCausalLM

    for arm, stage in [("polya", "midtrain"), ("polya", "rl"), ("vanilla", "rl")]:
        model_dir = workdir / arm / stage / "model"
        assert is_complete(model_dir, verify=True), model_dir
        assert AutoModelForCausalLM.from_pretrained(model_dir).num_parameters() > 0
    # The comparison report covers both arms and is printed at the end.
    assert st.report
    report = workdir / st.report
    assert report.is_file()
    md = (report if report.suffix == ".md" else report.parent / "report.md").read_text()
    assert "vanilla" in md and "polya" in md
    assert f"report: {report}" in out

    # Rerun: every stage is skipped by its manifest; nothing is rewritten.
    stamps = {p: p.stat().st_mtime_ns for p in workdir.glob("*/*/MANIFEST.json")}
    assert len(stamps) == 6
    assert run_file(path, workdir=workdir, quiet=True) == 0
    assert out.count("already complete") == 0
    assert capsys.readouterr().out.count("already complete (manifest found), skipped") == 6
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert all(e.attempts == 1 for e in status_of(workdir).stages)


def _wait_for(predicate: Any, proc: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before {what}")
        time.sleep(0.5)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}")


def _checkpoint(stage_dir: Path) -> Path | None:
    """The newest complete checkpoint of a training stage (training.py's own rule)."""
    from polya_trainer.stages.training import newest_checkpoint

    return newest_checkpoint(Workspace(stage_dir.parent.parent).checkpoints(
        stage_dir.parent.name, stage_dir.name))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ctrl_c_suspends_and_rerun_resumes(tmp_path: Path, toy_model_dir: Path,
                                           data: dict[str, Path]) -> None:
    """SIGINT during midtrain (held at the end of step 3): exit 130, status Suspended with
    the SIGTERM checkpoint; the rerun skips generate (same manifest) and finishes from it."""
    from polya_trainer.runtime.hold import HOLD_ENV
    from polya_trainer.stages.training import checkpoint_step

    body = reduced_run("stop", toy_model_dir, data, ["polya"],
                       midtrain={"maxSteps": 400, "saveSteps": 1000})
    path = write_run(tmp_path, body)
    workdir = tmp_path / "work"
    held = tmp_path / "held"
    env = dict(os.environ, POLYA_STOP_GRACE_SECONDS="120", **{HOLD_ENV: f"3:{held}"})
    proc = subprocess.Popen(polya_cli("run", str(path), "--workdir", str(workdir), "--quiet"),
                            env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    mid = workdir / "polya" / "midtrain"
    _wait_for(held.exists, proc, 600, "midtrain's step 3")
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == EXIT_INTERRUPTED, output
    st = status_of(workdir)
    assert cond(st, "Suspended").status == "True" and cond(st, "Suspended").reason == \
        "Interrupted"
    assert cond(st, "Running").status == "False"
    assert cond(st, "Succeeded").status == "Unknown"  # not finished: the rerun resumes
    states = {e.name: e.state for e in st.stages}
    assert states == {"generate": "Succeeded", "midtrain": "Suspended", "rl": "Pending",
                      "evaluate": "Pending"}
    assert read_manifest(mid) is None  # not finished
    assert checkpoint_step(_checkpoint(mid)) == 3  # saved on SIGTERM, not periodically
    gen_manifest = workdir / "polya" / "generate" / "MANIFEST.json"
    gen_stamp = gen_manifest.stat().st_mtime_ns

    # Resume, with a smaller step budget so the test stays short: the checkpoint is reused.
    body["spec"]["stages"]["midtrain"]["maxSteps"] = 6
    path.write_text(yaml.safe_dump(body))
    done = subprocess.run(polya_cli("run", str(path), "--workdir", str(workdir), "--quiet"),
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "polya/generate: already complete (manifest found), skipped" in done.stdout
    assert gen_manifest.stat().st_mtime_ns == gen_stamp
    st = status_of(workdir)
    assert cond(st, "Succeeded").status == "True"
    assert all(e.state == s.StageState.SUCCEEDED for e in st.stages)
    attempts = {e.name: e.attempts for e in st.stages}
    # The suspended attempt was resumed, not replaced (the planner's suspend rule).
    assert attempts == {"generate": 1, "midtrain": 1, "rl": 1, "evaluate": 1}
    assert st.observed_generation == 2  # the spec changed between the runs


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_failing_stage_is_retried_then_fails_the_run(tmp_path: Path, toy_model_dir: Path,
                                                     data: dict[str, Path]) -> None:
    """A stage that cannot succeed (missing RL data) uses its backoffLimit, then the run is
    Failed with the stage's own message; exit code 1."""
    body = reduced_run("fail", toy_model_dir, data, ["vanilla"],
                       rl={"dataset": {"source": str(tmp_path / "missing.jsonl")},
                           "backoffLimit": 1})
    path = write_run(tmp_path, body)
    workdir = tmp_path / "work"
    assert run_file(path, workdir=workdir, quiet=True) == 1
    st = status_of(workdir)
    rl = next(e for e in st.stages if e.name == "rl")
    assert rl.state == s.StageState.FAILED and rl.attempts == 2
    assert rl.reason == "BackoffLimitExceeded"
    assert "missing.jsonl" in (rl.message or "")
    assert cond(st, "Failed").status == "True"
    assert cond(st, "RLCompleted").status == "False"
    assert (workdir / "logs" / "fail-vanilla-rl-1.log").is_file()  # attempts count from 0


@pytest.mark.slow
def test_inprocess_mode_reports_a_failure(tmp_path: Path, toy_model_dir: Path,
                                          data: dict[str, Path],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """POLYA_LOCAL_INPROCESS=1 runs the stage in this process (Reporter listeners feed the
    status); a failure is recorded the same way, without retries when backoffLimit is 0."""
    monkeypatch.setenv("POLYA_LOCAL_INPROCESS", "1")
    body = reduced_run("inproc", toy_model_dir, data, ["vanilla"],
                       rl={"dataset": {"source": str(tmp_path / "absent.jsonl")},
                           "backoffLimit": 0})
    workdir = tmp_path / "work"
    assert run_file(write_run(tmp_path, body), workdir=workdir, quiet=True) == 1
    rl = next(e for e in status_of(workdir).stages if e.name == "rl")
    assert rl.state == s.StageState.FAILED and rl.attempts == 1
    assert "absent.jsonl" in (rl.message or "")
