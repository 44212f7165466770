"""The operator's progress gauges are named for what they measure (issue 27): a run's overall
progress per run, each stage's per stage; both go when the run finishes."""

from __future__ import annotations

from types import SimpleNamespace

from polya_operator import metrics as m
from polya_trainer import spec as s


def _plan(done: bool) -> SimpleNamespace:
    status = s.PolyaRunStatus(progress=30.0, stages=[
        s.StageStatus(name="midtrain", arm="polya", progress=100.0),
        s.StageStatus(name="rl", arm="polya", progress=40.0)])
    if done:
        status.conditions = [s.Condition(type="Succeeded", status="True", reason="Done")]
    return SimpleNamespace(status=status, transitions=[], actions=[])


def _value(name: str, **labels: str) -> float | None:
    return m.REGISTRY.get_sample_value(name, {"namespace": "ns", "name": "r9", **labels})


def test_run_and_stage_progress_gauges() -> None:
    m.observe_plan("ns", "r9", _plan(done=False))
    assert _value("polyarun_run_progress_ratio") == 0.3
    assert _value("polyarun_run_stage_progress_ratio", arm="polya", stage="rl") == 0.4
    assert _value("polyarun_run_stage_progress_ratio", arm="polya", stage="midtrain") == 1.0
    assert _value("polyarun_run_progress_ratio", arm="polya", stage="rl") is None
    m.observe_plan("ns", "r9", _plan(done=True))
    assert _value("polyarun_run_progress_ratio") is None
    assert _value("polyarun_run_stage_progress_ratio", arm="polya", stage="rl") is None
