"""Secrets and privileges.

1. A hub token (a Secret with a random value, created here) never appears in the PolyaRun
   status, Events, ConfigMaps, Jobs (only a secretKeyRef), pods, Services, claims, the
   operator's logs (DEBUG, captured) or its /metrics.
2. The rendered chart's RBAC grants exactly the verbs the operator uses: the emulator records
   every request of the operator (kopf's and ours, by User-Agent) while a scenario drives
   every code path (create, suspend/resume, spec change, deadline, deletion, multi-node
   Service, the watch check, pods refused by a quota); peering/webhook rules only when
   enabled. The emulator also enforces the chart's RBAC (tests/operator/emu_rbac.py), so
   nothing was refused.
3. Trainer pods are non-root with a read-only root filesystem (resources.py manifests); so is
   the operator's Deployment in the chart.

The operator is real (kopf in a thread); the API server is the filled kmock emulator with the
FAKE Job controller of tests/operator (there is no cluster here).
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import sys
import time
from typing import Any

import pytest
from relkit import (  # noqa: F401  (fixtures)
    JOBS,
    ROOT,
    condition,
    emu_state,
    figures,
    finished,
    make_cluster_fixture,
    start_operator_fixture,
    succeeded,
    wait_for,
)

OPERATOR_AGENTS = ("kopf", "polya-operator")
NS = "/api/v1/namespaces/default"
USED: dict[str, Any] = {}  # filled by the scenario, read by the RBAC test


def _outcomes(job: str) -> list[str]:
    if job == "sec-polya-generate-0":
        return ["hang", "succeed"]  # runs until suspended, then finishes after resume
    if job.startswith("late-"):
        return ["hang"]
    if job.startswith("gone-"):
        return ["hang"]
    return ["succeed"]


@pytest.mark.timeout(240)
def test_hub_token_never_leaks_and_operator_requests_are_recorded(
        make_cluster, start_operator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token = "hf_" + secrets.token_hex(20)
    encoded = base64.b64encode(token.encode()).decode()
    cluster = make_cluster(outcomes=_outcomes, delay=0.2)
    code, _ = cluster.call("POST", f"{NS}/secrets", {"metadata": {"name": "hub-token"},
                                                     "type": "Opaque",
                                                     "data": {"token": encoded}})
    assert code == 201
    op = start_operator(watch_check=0.5)
    spec = {"model": {"name": "org/gated-model",
                      "hubTokenSecret": {"name": "hub-token", "key": "token"}},
            "arms": ["vanilla", "polya"], "storage": {"whenDeleted": "Delete"},
            "stages": {"rl": {"resources": {"nodes": 2, "gpus": 1}}}}
    cluster.create_run("sec", spec)
    wait_for(lambda: "sec-polya-generate-0" in cluster.fake.started, 30, "generate running")
    cluster.patch_run("sec", {"spec": {"suspend": True}})  # -> patch jobs (suspend)
    wait_for(lambda: cluster.call("GET", f"{JOBS}/sec-polya-generate-0")[1]["spec"].get(
        "suspend"), 30, "suspended")
    cluster.patch_run("sec", {"spec": {"suspend": False, "ttlSecondsAfterFinished": 3600}})
    wait_for(lambda: succeeded(cluster, "sec"), 60, "the run to succeed")
    # A run deadline (delete a Job) and a deletion mid-run (delete Jobs).
    cluster.create_run("late", {"arms": ["vanilla"], "activeDeadlineSeconds": 2})
    cluster.create_run("gone", {"arms": ["vanilla"]})
    wait_for(lambda: cluster.jobs("gone") != [], 30, "gone's Job")
    cluster.call("DELETE", "/apis/polya.dev/v1alpha1/namespaces/default/polyaruns/gone")
    wait_for(lambda: finished(cluster, "late"), 30, "the deadline")
    wait_for(lambda: cluster.jobs("late") == [] and cluster.jobs("gone") == [], 30, "deleted")
    # A sweep: its parent creates (and owns) a child PolyaRun, then its report Job
    # (polya_operator/sweep.py).
    cluster.create_run("swp", {"model": spec["model"], "arms": ["vanilla"],
                               "sweep": {"seeds": [1]}})
    wait_for(lambda: succeeded(cluster, "swp"), 60, "the sweep to succeed")
    # Pods refused by a quota: the operator lists the Job's FailedCreate events.
    cluster.call("POST", f"{NS}/resourcequotas", {"metadata": {"name": "gpus"}, "spec": {
        "hard": {"requests.nvidia.com/gpu": "0"}}})
    cluster.create_run("quo", {"model": spec["model"], "arms": ["vanilla"],
                               "stages": {"rl": {"resources": {"gpus": 1}}}})
    wait_for(lambda: (((cluster.run("quo") or {}).get("status") or {}).get("stages") or [{}])[
        0].get("reason") == "FailedCreate", 30, "the quota refusal in status")
    cluster.call("DELETE", f"{NS}/resourcequotas/gpus")
    wait_for(lambda: succeeded(cluster, "quo"), 60, "the run to succeed after the quota")
    time.sleep(1.2)  # a couple of watch checks (list polyaruns)

    # --- the token appears nowhere but in its Secret
    sources = {
        "polyaruns": cluster.list("/apis/polya.dev/v1alpha1/namespaces/default/polyaruns"),
        "events": cluster.list(f"{NS}/events"),
        "configmaps": cluster.list(f"{NS}/configmaps"),
        "jobs": cluster.list(JOBS),
        "pods": cluster.list(f"{NS}/pods"),
        "services": cluster.list(f"{NS}/services"),
        "persistentvolumeclaims": cluster.list(f"{NS}/persistentvolumeclaims"),
        "operator-log": caplog.text,
        "operator-metrics": op.metrics(),
    }
    assert sources["configmaps"] and sources["events"] and sources["services"]
    assert len(caplog.records) > 50  # the log was really captured
    for what, value in sources.items():
        text = value if isinstance(value, str) else json.dumps(value)
        assert token not in text and encoded not in text, f"hub token found in {what}"
    stage_jobs = [j for j in sources["jobs"] if "polya.dev/stage" in j["metadata"]["labels"]]
    for job in sources["jobs"]:
        env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
        if job not in stage_jobs:  # the sweep's report Job reads results only: no token
            assert job["metadata"]["name"] == "swp-report" and "HF_TOKEN" not in env
            continue
        assert "value" not in env["HF_TOKEN"]
        assert env["HF_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "hub-token",
                                                                 "key": "token"}}
    assert condition(cluster.run("sec"), "Succeeded")["status"] == "True"

    state = emu_state(cluster)
    assert state["forbidden"] == []  # the emulator enforces the chart's RBAC (emu_rbac.py)
    # Plus what OwnerReferencesPermissionEnforcement authorizes on hardened clusters (emu.py).
    used = {(g, res, verb) for agent, verb, g, res, _ in state["requests"] + state["authorized"]
            if agent in OPERATOR_AGENTS}
    USED["verbs"] = sorted(used | _read_backs(used))
    USED["requests"] = sum(n for agent, *_x, n in state["requests"]
                           if agent in OPERATOR_AGENTS)
    figures("secrets", {"token_length": len(token), "places_checked": sorted(sources),
                        "log_records": len(caplog.records), "leaks": 0,
                        "jobs_with_secret_key_ref": len(stage_jobs)})


# ----------------------------------------------------------------------------- RBAC


def _read_backs(used: set[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
    """``get`` on each kind the operator creates through ``kube.Kube.create``, which reads
    the object back after a 409 to check its owner (a retained claim, a sweep's later
    variants, a namesake's uncollected children), whether or not the scenario met a 409."""
    from polya_operator import executor
    from polya_trainer import spec as s

    kinds = {(api.rpartition("/")[0], plural)
             for api, plural in [*executor._PLURALS.values(), (s.API_VERSION, s.PLURAL)]}
    return {(g, res, "get") for g, res, verb in used if verb == "create" and (g, res) in kinds}


def _render(values: dict[str, Any]) -> list[dict[str, Any]]:
    sys.path.insert(0, str(ROOT / "tools"))
    import helm_render

    return helm_render.objects(helm_render.render(values))


def _granted(objs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    out = set()
    for o in objs:
        if o.get("kind") in ("Role", "ClusterRole"):
            for rule in o.get("rules") or []:
                for g in rule.get("apiGroups") or []:
                    for res in rule.get("resources") or []:
                        for verb in rule.get("verbs") or []:
                            assert "*" not in (g, res, verb), rule
                            out.add((g, res, verb))
    return out


PEERING = {("kopf.dev", "kopfpeerings", v) for v in ("get", "list", "watch", "patch")} | {
    ("kopf.dev", "clusterkopfpeerings", v) for v in ("get", "list", "watch", "patch")}
WEBHOOK = {("admissionregistration.k8s.io", "validatingwebhookconfigurations", v)
           for v in ("create", "patch")}


@pytest.mark.parametrize("values", ["defaults", "namespaced", "webhook"])
def test_rbac_grants_exactly_what_the_operator_uses(values: str) -> None:
    if "verbs" not in USED:
        pytest.skip("needs the scenario above (run the module)")
    used = {tuple(x) for x in USED["verbs"]}
    sets = {"defaults": {},
            "namespaced": {"watch": {"mode": "namespace", "namespaces": ["team-a"]},
                           "operator": {"peering": {"enabled": True}}},
            "webhook": {"webhook": {"enabled": True}}}
    granted = _granted(_render(sets[values]))
    extras_allowed: set[tuple[str, str, str]] = set()
    if values == "namespaced":
        extras_allowed |= PEERING
    if values == "webhook":
        extras_allowed |= WEBHOOK
    missing = used - granted
    beyond = granted - used - extras_allowed
    assert not missing, f"the operator uses verbs the chart does not grant: {sorted(missing)}"
    assert not beyond, f"the chart grants verbs the operator never used: {sorted(beyond)}"
    figures(f"rbac-{values}", {"used": sorted(map(list, used)),
                               "granted": sorted(map(list, granted)),
                               "operator_requests_recorded": USED["requests"],
                               "missing": [], "beyond": []})


# ----------------------------------------------------------------------------- pods


def test_pods_are_non_root_with_read_only_root_filesystem() -> None:
    from polya_operator import resources as r
    from polya_trainer import spec as s

    spec = s.parse_spec({"model": {"name": "org/m", "hubTokenSecret": {"name": "t"}},
                         "stages": {"rl": {"resources": {"nodes": 2, "gpus": 8}}}})
    meta = {"name": "x", "namespace": "default", "uid": "u"}
    for arm in spec.arms:
        for stage in spec.stages_for(arm):
            pod = r.job(meta, spec, arm, stage, 0)["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["automountServiceAccountToken"] is False
            for c in pod["containers"]:
                sc = c["securityContext"]
                assert sc["runAsNonRoot"] and sc["runAsUser"] != 0
                assert sc["readOnlyRootFilesystem"] is True
                assert sc["allowPrivilegeEscalation"] is False
                assert sc["capabilities"]["drop"] == ["ALL"]
    deployments = [o for o in _render({}) if o.get("kind") == "Deployment"]
    assert deployments
    for dep in deployments:
        pod = dep["spec"]["template"]["spec"]
        for c in pod["containers"]:
            sc = {**(pod.get("securityContext") or {}), **(c.get("securityContext") or {})}
            assert sc.get("runAsNonRoot") is True and sc.get("readOnlyRootFilesystem") is True
            assert sc.get("allowPrivilegeEscalation") is False
