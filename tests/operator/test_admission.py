"""The emulator admits PolyaRuns as kube-apiserver admits custom resources (emu.py ``_admit``).

Each case is a documented server behaviour, cited where the test states it; the operator is
not running, so every answer here is the emulator's own.
"""

from __future__ import annotations

from typing import Any

from opkit import RUNS

MERGE = "application/merge-patch+json"
SPEC = {"model": {"name": "org/model"}, "stages": {"evaluate": {"k": [1], "samples": 4}}}


def _run(name: str, spec: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "polya.dev/v1alpha1", "kind": "PolyaRun",
            "metadata": {"name": name, **meta}, "spec": spec or SPEC}


def test_defaults_are_stored_and_unknown_fields_pruned(make_cluster):
    """Structural schemas prune unknown fields, and defaults are applied before storage (the
    CRD task page, "Field pruning" and "Defaulting")."""
    cluster = make_cluster()
    code, made = cluster.call("POST", RUNS, _run("a", {**SPEC, "colour": "blue"}))
    assert code == 201, made
    assert "colour" not in made["spec"]
    assert made["spec"]["stages"]["evaluate"]["k"] == [1]
    assert set(made["spec"]) > set(SPEC), "the schema's defaults were not stored"


def test_strict_field_validation_refuses_unknown_fields(make_cluster):
    """``fieldValidation=Strict`` (what kubectl sends by default) refuses instead of pruning
    (the API concepts page, "Field validation")."""
    cluster = make_cluster()
    code, body = cluster.call("POST", RUNS + "?fieldValidation=Strict",
                              _run("a", {**SPEC, "colour": "blue"}))
    assert code == 400 and body["reason"] == "BadRequest", body
    assert cluster.run("a") is None


def test_cel_rules_run_on_update_and_name_the_field(make_cluster):
    cluster = make_cluster()
    assert cluster.call("POST", RUNS, _run("a"))[0] == 201
    code, body = cluster.call("PATCH", f"{RUNS}/a",
                              {"spec": {"stages": {"evaluate": {"k": [128]}}}}, MERGE)
    assert code == 422, body
    assert [c["field"] for c in body["details"]["causes"]] == ["spec.stages.evaluate"]
    assert cluster.run("a")["spec"]["stages"]["evaluate"]["k"] == [1]


def test_status_is_validated_against_its_schema(make_cluster):
    """The status subresource validates status against the CRD's status schema."""
    cluster = make_cluster()
    cluster.call("POST", RUNS, _run("a"))
    bad = {"status": {"stages": [{"name": "pretrain", "arm": "vanilla"}]}}
    code, body = cluster.call("PATCH", f"{RUNS}/a/status", bad, MERGE)
    assert code == 422 and "status.stages[0].name" in body["message"], body
    good = {"status": {"stages": [{"name": "generate", "arm": "vanilla"}]}}
    assert cluster.call("PATCH", f"{RUNS}/a/status", good, MERGE)[0] == 200


def test_invalid_values_stored_earlier_are_ratcheted(make_cluster):
    """Validation ratcheting (GA in 1.33): an update may keep an invalid value it does not
    change, but may not change it to another invalid one."""
    cluster = make_cluster()
    bad = {"model": {"name": "org/model"}, "stages": {"evaluate": {"k": [128], "samples": 4}}}
    cluster.call("POST", "/_emu/seed", {"resource": "polya.dev/v1alpha1/polyaruns",
                                        "count": 1, "prefix": "old-", "spec": bad})
    code, body = cluster.call("PATCH", f"{RUNS}/old-0",
                              {"metadata": {"labels": {"team": "a"}}}, MERGE)
    assert code == 200, body
    code, body = cluster.call("PATCH", f"{RUNS}/old-0",
                              {"spec": {"stages": {"evaluate": {"k": [64]}}}}, MERGE)
    assert code == 422, body


def test_writes_honour_resource_version_preconditions(make_cluster):
    """A PUT of a custom resource needs a resourceVersion (apiextensions-apiserver
    pkg/registry/customresource/strategy.go, AllowUnconditionalUpdate is false); a stale one,
    in a PUT or a patch, is a 409 Conflict."""
    cluster = make_cluster()
    _, made = cluster.call("POST", RUNS, _run("a"))
    unversioned = _run("a")
    code, body = cluster.call("PUT", f"{RUNS}/a", unversioned)
    assert code == 422 and "resourceVersion" in body["message"], body
    stale = made["metadata"]["resourceVersion"]
    assert cluster.call("PATCH", f"{RUNS}/a", {"metadata": {"labels": {"x": "1"}}},
                        MERGE)[0] == 200
    code, body = cluster.call("PATCH", f"{RUNS}/a", {"metadata": {
        "resourceVersion": stale, "labels": {"x": "2"}}}, MERGE)
    assert code == 409 and body["reason"] == "Conflict", body
    current = cluster.run("a")
    assert current["metadata"]["labels"] == {"x": "1"}
    current["metadata"]["labels"] = {"x": "3"}
    assert cluster.call("PUT", f"{RUNS}/a", current)[0] == 200


def test_custom_resources_refuse_strategic_merge_patches(make_cluster):
    cluster = make_cluster()
    cluster.call("POST", RUNS, _run("a"))
    code, body = cluster.call("PATCH", f"{RUNS}/a", {"metadata": {"labels": {"x": "1"}}},
                              "application/strategic-merge-patch+json")
    assert code == 415, body
