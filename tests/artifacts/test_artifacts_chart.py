"""The Helm chart, rendered and linted by the real Helm v4 engine (helm-python-sdk)."""

from __future__ import annotations

import json
from typing import Any

import helm_python as helm
import pytest
import yaml
from artifacts_env import CHART, MANIFESTS, ROOT, VALUE_SETS, helm_render


def _objs(rendered: dict[str, str]) -> list[dict[str, Any]]:
    return helm_render.objects(rendered)


def _kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_lint_strict_has_no_findings(name: str) -> None:
    report = helm.lint(CHART, VALUE_SETS[name], strict=True, namespace="polyarun-system",
                       kube_version="v1.30.0")
    assert report["errors"] == []
    bad = [m for m in report["messages"] if m["severity"] >= 2]
    assert bad == [], bad


def test_lint_reports_a_broken_template(tmp_path) -> None:
    """The lint check above can fail: a copy of the chart with a bad template is reported."""
    chart = helm.Chart.load(CHART).save_dir(tmp_path)
    bad = tmp_path / "polyarun" / "templates" / "broken.yaml"
    bad.write_text("kind: ConfigMap\nmetadata: {name: {{ .Values.nope.missing }}}\n")
    report = helm.lint(chart, strict=True)
    assert report["errors"] or any(m["severity"] == 3 for m in report["messages"])


@pytest.mark.parametrize("values, where", [
    ({"watch": {"mode": "everywhere"}}, "/watch/mode"),
    ({"image": {"repository": "x", "tag": "has space"}}, "/image/tag"),
    ({"image": {"repository": "x", "digest": "md5:abc"}}, "/image/digest"),
    ({"metrics": {"port": 70000}}, "/metrics/port"),
    ({"operator": {"logFormat": "xml"}}, "/operator/logFormat"),
    ({"operator": {"replicas": 2}}, "replicas"),
    ({"trainer": {"defaultResources": {"rl": {"gpus": -1}}}}, "/trainer/defaultResources/rl/gpus"),
    ({"trainer": {"defaultResources": {"rl": {"memory": "lots"}}}}, "memory"),
    ({"unknownTopLevel": True}, "unknownTopLevel"),
    ({"webhook": {"enabled": "yes"}}, "/webhook/enabled"),
])
def test_schema_rejects_bad_values(values: dict[str, Any], where: str) -> None:
    chart = helm.Chart.load(CHART)
    with pytest.raises(helm.HelmValuesError, match=where):
        chart.validate_schema(chart.merge_values(values))
    with pytest.raises(helm.HelmError):
        helm_render.render(values)


def test_default_render(renders: dict[str, dict[str, str]]) -> None:
    objs = _objs(renders["defaults"])
    kinds = sorted(o["kind"] for o in objs)
    assert kinds == sorted(["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment",
                            "Service", "NetworkPolicy", "ConfigMap", "ConfigMap"])
    (dep,) = _kind(objs, "Deployment")
    spec = dep["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (c,) = pod["containers"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["resources"]["limits"] and c["resources"]["requests"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert {"name": "metrics", "containerPort": 8080, "protocol": "TCP"} in c["ports"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["POLYA_TRAINER_IMAGE"] == "ghcr.io/polyarun/trainer:0.1.0"
    assert env["POLYA_OPERATOR_METRICS_PORT"] == "8080"
    assert env["POLYA_LOG_FORMAT"] == "json" and env["POLYA_WEBHOOK"] == "0"
    assert env["POLYA_NAMESPACES"] == ""
    assert json.loads(env["POLYA_DEFAULT_RESOURCES"])["rl"]["gpus"] == 4
    assert c["args"] == ["--all-namespaces", "--standalone"]
    # No Prometheus Operator objects unless asked for.
    assert not {"ServiceMonitor", "PodMonitor", "PrometheusRule"} & set(kinds)


def _rules(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for o in _kind(objs, kind) for r in o["rules"]]


def _verbs(rules: list[dict[str, Any]], group: str, resource: str) -> set[str]:
    return {v for r in rules if group in r["apiGroups"] and resource in r["resources"]
            for v in r["verbs"]}


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_rbac_has_no_wildcards(name: str, renders: dict[str, dict[str, str]]) -> None:
    objs = _objs(renders[name])
    for rule in _rules(objs, "ClusterRole") + _rules(objs, "Role"):
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], rule
        assert "resourceNames" not in rule or "*" not in rule["resourceNames"]
        # Never secrets, never escalation verbs.
        assert "secrets" not in rule["resources"]
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])


def test_rbac_cluster_mode(renders: dict[str, dict[str, str]]) -> None:
    rules = _rules(_objs(renders["defaults"]), "ClusterRole")
    # get: the owner check after a create answered 409 (kube.py Kube.create), on every kind
    # the operator creates (a retained workspace claim, a sweep's later variants).
    assert _verbs(rules, "batch", "jobs") == {"get", "create", "list", "watch", "delete",
                                             "patch"}
    # get/create/delete: a sweep's child PolyaRuns (polya_operator/sweep.py).
    assert _verbs(rules, "polya.dev", "polyaruns") == {"list", "watch", "get", "create",
                                                       "delete"}
    assert _verbs(rules, "polya.dev", "polyaruns/status") == {"patch"}
    assert _verbs(rules, "", "pods") == {"list", "watch"}
    assert _verbs(rules, "", "configmaps") == {"get", "create", "delete"}  # immutable
    # OwnerReferencesPermissionEnforcement (OpenShift): blockOwnerDeletion on the children
    # needs update on the owner's finalizers, an ownerReference needs delete on the child.
    assert _verbs(rules, "polya.dev", "polyaruns/finalizers") == {"update"}
    assert _verbs(rules, "", "persistentvolumeclaims") == {"get", "create", "delete"}
    assert _verbs(rules, "", "services") == {"get", "create", "delete"}
    # kopf's scanning is off (handlers.py): no CRD or namespace access.
    assert not _verbs(rules, "apiextensions.k8s.io", "customresourcedefinitions")
    assert not _verbs(rules, "", "namespaces")
    # Off by default: peering and the webhook.
    assert not _verbs(rules, "kopf.dev", "clusterkopfpeerings")
    assert not _verbs(rules, "admissionregistration.k8s.io", "validatingwebhookconfigurations")
    assert not _kind(_objs(renders["defaults"]), "Role")


def test_rbac_namespace_mode(renders: dict[str, dict[str, str]]) -> None:
    objs = _objs(renders["namespaced"])
    assert not _kind(objs, "ClusterRole") and not _kind(objs, "ClusterRoleBinding")
    roles = _kind(objs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for binding in _kind(objs, "RoleBinding"):
        assert binding["subjects"][0]["namespace"] == "polyarun-system"
    rules = _rules(objs, "Role")
    assert _verbs(rules, "kopf.dev", "kopfpeerings") == {"get", "list", "watch", "patch"}
    assert not _verbs(rules, "", "namespaces")
    (dep,) = _kind(objs, "Deployment")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["args"] == ["--namespace=team-a", "--namespace=team-b", "--peering=polyarun"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["POLYA_NAMESPACES"] == "team-a,team-b"


def test_webhook_values(renders: dict[str, dict[str, str]]) -> None:
    objs = _objs(renders["webhook"])
    rules = _rules(objs, "ClusterRole")
    assert _verbs(rules, "admissionregistration.k8s.io", "validatingwebhookconfigurations") == {
        "create", "patch"}
    assert _verbs(rules, "kopf.dev", "clusterkopfpeerings") == {"get", "list", "watch", "patch"}
    services = {s["metadata"]["name"]: s for s in _kind(objs, "Service")}
    assert services["polyarun-webhook"]["spec"]["ports"][0]["targetPort"] == "webhook"
    (dep,) = _kind(objs, "Deployment")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["POLYA_WEBHOOK"] == "1"
    assert env["POLYA_WEBHOOK_HOST"] == "polyarun-webhook.polyarun-system.svc"
    assert c["image"] == "ghcr.io/polyarun/operator@sha256:" + "0" * 64
    assert (env["POLYA_WEBHOOK_SERVICE"], env["POLYA_WEBHOOK_SERVICE_NAMESPACE"],
            env["POLYA_WEBHOOK_SERVICE_PORT"]) == ("polyarun-webhook", "polyarun-system", "9443")
    (netpol,) = _kind(objs, "NetworkPolicy")
    ports = [{p["port"] for p in rule["ports"]} for rule in netpol["spec"]["ingress"]]
    assert ports == [{8080}, {9443}]  # the webhook rule has no `from`: the API server calls
    assert "from" not in netpol["spec"]["ingress"][1]


def test_monitoring_values(renders: dict[str, dict[str, str]]) -> None:
    objs = _objs(renders["monitoring"])
    (sm,) = _kind(objs, "ServiceMonitor")
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    (pm,) = _kind(objs, "PodMonitor")
    assert pm["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    assert pm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "trainer"
    (rule,) = _kind(objs, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kps"
    # One source: the PrometheusRule's spec IS the promtool-tested rules file.
    source = yaml.safe_load((CHART / "rules" / "polyarun.rules.yaml").read_text())
    assert rule["spec"] == source
    for cm in _kind(objs, "ConfigMap"):
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["annotations"] == {"grafana_folder": "PolyaRun"}
        (text,) = cm["data"].values()
        assert json.loads(text)["uid"].startswith("polyarun-")


def test_dashboards_can_be_turned_off() -> None:
    objs = _objs(helm_render.render({"dashboards": {"enabled": False}}))
    assert not _kind(objs, "ConfigMap")


def test_chart_crd_is_the_generated_one() -> None:
    chart_crd = (CHART / "crds" / "polyaruns.polya.dev.yaml").read_text()
    assert chart_crd == (MANIFESTS / "crd.yaml").read_text()
    (crd,) = helm.Chart.load(CHART).crds
    assert yaml.safe_load(crd["data"])["metadata"]["name"] == "polyaruns.polya.dev"


def test_notes_render() -> None:
    rendered = helm.Chart.load(CHART).render({}, name="polyarun", namespace="ml")
    notes = next(v for k, v in rendered.items() if k.endswith("NOTES.txt"))
    assert "kubectl -n ml rollout status deployment/polyarun-operator" in notes


def test_generated_files_are_up_to_date() -> None:
    import gen_dashboards
    import gen_manifests

    assert gen_dashboards.main(["--check"]) == 0, "run scripts/gen_dashboards.py"
    assert gen_manifests.main(["--check"]) == 0, "run scripts/gen_manifests.py"
    assert (ROOT / "manifests" / "kustomization.yaml").exists()
