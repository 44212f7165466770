"""No Job is created for an invalid run: fuzzed PolyaRuns (the strategy of
tests/unit/test_fuzz_spec.py, which sends 10,000 of them through pydantic and the CRD schema)
go to the pure planner; every one the contract rejects gets no child at all (no Job, spec
ConfigMap, claim or Service) and a Failed condition with reason InvalidSpec naming a field.
Accepted ones do get their first Jobs (so the check can fail both ways)."""

from __future__ import annotations

import importlib.util
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from polya_trainer import spec as s
from polya_trainer.engine import planner as p
from relkit import figures

_spec = importlib.util.spec_from_file_location(
    "polya_fuzz_strategies", Path(__file__).resolve().parents[1] / "unit" / "test_fuzz_spec.py")
assert _spec and _spec.loader
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)

EXAMPLES = int(os.environ.get("POLYA_REL_INVALID_EXAMPLES", "300"))
STATS = {"invalid": 0, "valid": 0, "metadata_only": 0}
NOW = datetime(2026, 5, 9, tzinfo=UTC)
CHILDREN = (p.StartAttempt, p.SnapshotSpec, p.PrepareWorkspace)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(fuzz.polyaruns())
def test_invalid_runs_get_no_job(obj: dict[str, Any]) -> None:
    obj = {**obj, "metadata": {**obj["metadata"], "namespace": "default", "uid": "u1",
                               "generation": 1}}
    try:
        s.parse_spec(obj["spec"])
        spec_ok = True
    except s.SpecError:
        spec_ok = False
    plan = p.plan(obj, [], NOW)
    if spec_ok:
        if fuzz._pydantic(obj):  # only metadata is wrong: the API server refuses those
            STATS["metadata_only"] += 1
            return
        STATS["valid"] += 1
        assert plan.of(p.StartAttempt), obj
        return
    STATS["invalid"] += 1
    assert not [a for a in plan.actions if isinstance(a, CHILDREN)], plan.actions
    conds = {c.type: c.model_dump() for c in plan.status.conditions}
    assert conds["Failed"]["status"] == "True" and conds["Failed"]["reason"] == "InvalidSpec"
    assert conds["Failed"]["message"].startswith("spec"), conds["Failed"]
    assert [e for e in plan.of(p.Event) if e.reason == "InvalidSpec"]
    # Reconciling again (a restart, a resync) still creates nothing and posts no new Event.
    again = p.plan({**obj, "status": plan.status}, [], NOW)
    assert not [a for a in again.actions if isinstance(a, (*CHILDREN, p.Event))]


def test_invalid_summary() -> None:
    """Runs after the property test (file order): both kinds occurred; write the figures."""
    if STATS["invalid"] + STATS["valid"] == 0:
        return  # run alone
    assert STATS["invalid"] > 0 and STATS["valid"] > 0, STATS
    figures("invalid-specs", {"examples": EXAMPLES, **STATS,
                              "jobs_created_for_invalid": 0,
                              "contract_fuzz_examples": fuzz.EXAMPLES})
