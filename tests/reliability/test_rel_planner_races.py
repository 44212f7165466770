"""Watch ordering: the Job and pod watches are separate streams, so a Job's Complete event can
arrive before its pod's termination message (the stage outputs). When that Job is the run's
last, the run is already finished when the pod event comes; its outputs (and the report
path) must still reach the status. Seen under API trouble (test_rel_api_trouble.py); the
missing jobName was seen in test_rel_operator_kills.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from polya_trainer.engine import planner as p

NOW = datetime(2026, 5, 9, tzinfo=UTC)


def _job(stage: str, progress: dict | None) -> p.Attempt:
    return p.Attempt(name=f"r-vanilla-{stage}-0", arm="vanilla", stage=stage, attempt=0,
                     phase="Succeeded", progress=progress)


def test_outputs_arriving_after_the_run_finished_are_kept() -> None:
    run = {"metadata": {"name": "r", "namespace": "default", "uid": "u", "generation": 1},
           "spec": {"model": {"name": "org/model"}, "arms": ["vanilla"]}, "status": {}}
    jobs = [_job("rl", {"stage": "rl", "outputs": {"model": "m"}}), _job("evaluate", None)]
    first = p.plan(run, jobs, NOW)  # both Jobs complete; evaluate's pod event not yet seen
    conds = {c.type: c.status for c in first.status.conditions}
    assert conds["Succeeded"] == "True"
    stages = {x["name"]: x for x in first.status.dump()["stages"]}
    assert stages["rl"]["outputs"] == {"model": "m"} and stages["evaluate"]["outputs"] == {}
    # Jobs found complete with no status of their own (an operator restarted between creating
    # them and writing status) still get their jobName.
    assert stages["evaluate"]["jobName"] == "r-vanilla-evaluate-0"
    # The pod event with the termination message arrives.
    late = {"stage": "evaluate", "outputs": {"report": "vanilla/evaluate/report.md"},
            "metrics": {"pass_at_1": 0.5}}
    jobs[1] = _job("evaluate", late)
    second = p.plan({**run, "status": first.status}, jobs, NOW)
    stages = {x["name"]: x for x in second.status.dump()["stages"]}
    assert stages["evaluate"]["outputs"] == {"report": "vanilla/evaluate/report.md"}
    assert stages["evaluate"]["metrics"]["pass_at_1"] == 0.5
    assert second.status.report == "vanilla/evaluate/report.md"
    assert not second.of(p.StartAttempt)
    # And it is stable: a third reconcile changes nothing.
    third = p.plan({**run, "status": second.status}, jobs, NOW)
    assert json.dumps(third.status.dump(), sort_keys=True) == \
        json.dumps(second.status.dump(), sort_keys=True)
