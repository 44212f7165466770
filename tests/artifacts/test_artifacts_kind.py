"""The paths a real user takes to a cluster: scripts/kind-e2e.sh's chart arguments and the CI
workflow that runs it (neither kind nor docker can run here; these check what can be
checked without them)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml
from artifacts_env import ROOT, helm_render

SCRIPT = ROOT / "scripts" / "kind-e2e.sh"
WORKFLOW = ROOT / ".github" / "workflows" / "e2e-kind.yaml"


def _values(args: list[str]) -> dict[str, Any]:
    """`--set a.b=c` pairs as Helm reads them (strings; this script sets no lists)."""
    values: dict[str, Any] = {}
    assert len(args) % 2 == 0, args
    for flag, pair in zip(args[::2], args[1::2], strict=True):
        assert flag == "--set", flag
        key, _, value = pair.partition("=")
        node = values
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return values


def test_kind_script_installs_the_chart_with_valid_values() -> None:
    env = {"PATH": "/usr/bin:/bin", "OPERATOR_IMAGE": "polyarun/operator:e2e",
           "TRAINER_IMAGE": "registry.local:5000/polyarun/trainer:e2e"}
    out = subprocess.run(["bash", str(SCRIPT), "--helm-args"], env=env, check=True,
                         capture_output=True, text=True).stdout.split("\n")
    values = _values([x for x in out if x])
    # helm_render validates against values.schema.json, as `helm upgrade --install` does
    # (a plain string for trainer.image failed there: the schema wants an object).
    objs = helm_render.objects(helm_render.render(values))
    (dep,) = [o for o in objs if o["kind"] == "Deployment"]
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "polyarun/operator:e2e"
    env_vars = {e["name"]: e.get("value") for e in container["env"]}
    assert env_vars["POLYA_TRAINER_IMAGE"] == "registry.local:5000/polyarun/trainer:e2e"


def test_ci_workflow_builds_images_and_runs_the_e2e_tier_on_kind() -> None:
    flow = yaml.safe_load(WORKFLOW.read_text())
    triggers = flow.get("on", flow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "workflow_dispatch" in triggers
    steps = [s for job in flow["jobs"].values() for s in job["steps"]]
    runs = "\n".join(s.get("run", "") for s in steps)
    uses = [s.get("uses", "") for s in steps]
    assert "scripts/kind-e2e.sh" in runs and "kubernetes==" in runs
    assert any(u.startswith("helm/kind-action@") or u.startswith("azure/setup-helm@")
               for u in uses), uses
    for line in runs.splitlines():  # every script the workflow calls exists
        for word in line.split():
            if word.startswith("scripts/"):
                assert (ROOT / word).exists(), word
    assert Path(SCRIPT).stat().st_mode & 0o111 or "bash scripts/kind-e2e.sh" in runs


def test_ci_workflow_pins_match_the_project() -> None:
    import re

    pins = re.findall(r"([A-Za-z][\w.-]*==[\w.]+)", WORKFLOW.read_text())
    project = (ROOT / "pyproject.toml").read_text()
    assert pins and all(f'"{pin}"' in project for pin in pins), pins


def test_kind_script_model_job_is_valid_and_sets_the_happy_paths_model() -> None:
    """The manifests the script applies to build the happy path's model (its YAML heredoc,
    with the script's variables filled in) pass the API's schema; the e2e run gets the model
    and its claim."""
    import kubernetes_validate

    text = SCRIPT.read_text()
    body = text.split("<<YAML\n", 1)[1].split("\nYAML\n", 1)[0]
    body = body.replace("$MODEL_CLAIM", "polya-e2e-models").replace(
        "$TRAINER_IMAGE", "polyarun/trainer:e2e")
    docs = list(yaml.safe_load_all(body))
    assert [d["kind"] for d in docs] == ["PersistentVolumeClaim", "Job"]
    for doc in docs:
        kubernetes_validate.validate(doc, "1.32.0", strict=True)
    mounts = docs[1]["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert "build_tiny_model('/workspace/models/tiny')" in " ".join(
        docs[1]["spec"]["template"]["spec"]["containers"][0]["command"])
    assert mounts == [{"name": "models", "mountPath": "/workspace"}]
    assert "POLYA_E2E_MODEL=/workspace/models/tiny POLYA_E2E_CLAIM=$MODEL_CLAIM" in text
