"""Rendered manifests and manifests/ through real validators: kubernetes-validate --strict,
checkov, `kubectl kustomize`; sample PolyaRuns against the committed CRD's schema."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from artifacts_env import MANIFESTS, VALUE_SETS, helm_render

KUBE_VERSIONS = ("1.30.0", "1.37.0")  # oldest and newest we claim (Chart kubeVersion >=1.27)
PROM_OPERATOR_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


def _yaml_files(base: Path) -> list[Path]:
    return sorted(p for p in base.rglob("*.yaml") if p.is_file())


def _kubernetes_validate(venv_bin: Path, files: list[Path], version: str) -> tuple[int, str]:
    proc = subprocess.run([str(venv_bin / "kubernetes-validate"), "--strict", "-k", version,
                           *map(str, files)], capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_kubernetes_validate_renders(version: str, rendered_dirs: dict[str, Path],
                                     venv_bin: Path) -> None:
    files = [f for d in rendered_dirs.values() for f in _yaml_files(d)]
    rc, out = _kubernetes_validate(venv_bin, files, version)
    assert rc == 0, out
    assert "ERROR" not in out, out
    # Only the Prometheus Operator kinds may lack a schema (their CRDs are not built in).
    for line in out.splitlines():
        if line.startswith("WARN"):
            assert any(k in line for k in PROM_OPERATOR_KINDS), line


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_kubernetes_validate_manifests(version: str, venv_bin: Path) -> None:
    files = [f for f in _yaml_files(MANIFESTS) if "samples" not in f.parts
             and f.name != "kustomization.yaml"]
    rc, out = _kubernetes_validate(venv_bin, files, version)
    assert rc == 0 and "ERROR" not in out and "WARN" not in out, out


def test_kubernetes_validate_catches_errors(tmp_path: Path, venv_bin: Path) -> None:
    """The validator can fail: a typo'd field in the rendered Deployment is an error."""
    rendered = helm_render.render({})
    dep = next(o for o in helm_render.objects(rendered) if o["kind"] == "Deployment")
    dep["spec"]["template"]["spec"]["containers"][0]["imagee"] = "x"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(dep))
    rc, out = _kubernetes_validate(venv_bin, [bad], "1.30.0")
    assert rc != 0 and "imagee" in out


def _checkov(checkov: str, target: Path) -> dict[str, Any]:
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    proc = subprocess.run([checkov, "-d", str(target), "--framework", "kubernetes",
                           "--compact", "-o", "json", "--skip-download"],
                          capture_output=True, text=True, env=env, timeout=240)
    data = json.loads(proc.stdout)
    return data[0] if isinstance(data, list) else data


def test_checkov_has_no_unexplained_failures(checkov: str, tmp_path: Path) -> None:
    """Every value set at once; a failed check must be skipped in the chart with a reason."""
    for name, values in VALUE_SETS.items():
        helm_render.write(helm_render.render(values), tmp_path / name)
    report = _checkov(checkov, tmp_path)
    results = report["results"]
    failed = [(c["check_id"], c["resource"]) for c in results["failed_checks"]]
    assert failed == []
    assert report["summary"]["passed"] > 50
    for skipped in results["skipped_checks"]:
        reason = (skipped.get("check_result") or {}).get("suppress_comment", "")
        assert len(reason) > 20, skipped["check_id"]


def test_checkov_catches_a_privileged_pod(checkov: str, tmp_path: Path) -> None:
    """The checkov gate can fail: a privileged copy of the Deployment fails CKV_K8S_16."""
    dep = next(o for o in helm_render.objects(helm_render.render({}))
               if o["kind"] == "Deployment")
    dep["metadata"]["name"] = "bad"
    dep["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"] = True
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(dep))
    report = _checkov(checkov, tmp_path)
    assert "CKV_K8S_16" in {c["check_id"] for c in report["results"]["failed_checks"]}


def _key(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return obj["kind"], meta.get("namespace", ""), meta["name"]


_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _numbers(node: Any) -> Any:
    """Compare numbers by value: kustomize writes 1.0e-05 as `1e-05` and 2.0 as `2`, which
    Kubernetes (YAML 1.2) reads as the same floats but PyYAML (YAML 1.1) reads as a string."""
    if isinstance(node, dict):
        return {k: _numbers(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_numbers(v) for v in node]
    if isinstance(node, bool):
        return node
    if isinstance(node, int | float):
        return float(node)
    if isinstance(node, str) and _FLOAT.match(node):
        return float(node)
    return node


def _normalise(obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    labels = obj["metadata"].get("labels") or {}
    for key in ("helm.sh/chart", "app.kubernetes.io/managed-by"):
        labels.pop(key, None)
    return _numbers(obj)


def test_kustomize_base_equals_chart_defaults(kubectl: str) -> None:
    proc = subprocess.run([kubectl, "kustomize", str(MANIFESTS)], capture_output=True,
                          text=True, timeout=60, check=True)
    kustomized = {_key(o): _normalise(o) for o in yaml.safe_load_all(proc.stdout) if o}
    (namespace,) = [k for k in kustomized if k[0] == "Namespace"]
    assert namespace[2] == helm_render.NAMESPACE
    del kustomized[namespace]
    chart = {_key(o): _normalise(o)
             for o in helm_render.objects(helm_render.render({}, include_crds=True))}
    assert sorted(kustomized) == sorted(chart)
    for key, obj in chart.items():
        assert kustomized[key] == obj, key
    # kustomize marks what it manages; Helm's labels are gone.
    raw = [o for o in yaml.safe_load_all(proc.stdout) if o]
    assert all(o["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kustomize"
               for o in raw)


# ------------------------------------------------------------------ samples vs the CRD


def _to_jsonschema(node: Any) -> Any:
    """OpenAPI v3 (Kubernetes structural schema) -> JSON Schema draft 4."""
    if isinstance(node, list):
        return [_to_jsonschema(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _to_jsonschema(v) for k, v in node.items()
           if not k.startswith("x-kubernetes-") and k != "nullable"}
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("additionalProperties", False)  # API server prunes/rejects unknowns
    return out


def _crd_validator() -> jsonschema.Draft4Validator:
    crd = yaml.safe_load((MANIFESTS / "crd.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
    return jsonschema.Draft4Validator(_to_jsonschema(version["schema"]["openAPIV3Schema"]))


SAMPLES = sorted((MANIFESTS / "samples").glob("*.yaml"))


def test_there_are_samples() -> None:
    assert SAMPLES, "manifests/samples/ has no PolyaRun"


@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
def test_sample_matches_crd_schema(path: Path) -> None:
    validator = _crd_validator()
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs
    for doc in docs:
        assert doc["apiVersion"] == "polya.dev/v1alpha1" and doc["kind"] == "PolyaRun"
        errors = [f"{'.'.join(map(str, e.path))}: {e.message}"
                  for e in validator.iter_errors(doc)]
        assert errors == [], errors


def test_crd_schema_rejects_a_bad_sample() -> None:
    doc = yaml.safe_load(SAMPLES[0].read_text())
    doc["spec"]["arms"] = ["nope"]
    doc["spec"]["unknownField"] = 1
    messages = " ".join(e.message for e in _crd_validator().iter_errors(doc))
    assert "nope" in messages and "unknownField" in messages
