"""`polya plan FILE -o yaml|json`: every object the operator would create, as it builds them
(the planner run against a cluster where each Job succeeds), valid Kubernetes objects."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from polya_operator import resources as r

ROOT = Path(__file__).resolve().parents[2]
K8S = "1.32.0"

RUN = """\
apiVersion: polya.dev/v1alpha1
kind: PolyaRun
metadata: {name: demo, namespace: team-a}
spec:
  model: {name: org/model}
  dataset: {source: org/data}
  arms: [vanilla, polya]
  stages:
    midtrain: {resources: {gpus: 4, nodes: 2}}
    evaluate: {benchmarks: [gsm8k]}
"""


def plan(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    f = tmp_path / "run.yaml"
    f.write_text(RUN)
    return subprocess.run([sys.executable, "-m", "polya_operator.cli", "plan", str(f), *args],
                          capture_output=True, text=True, cwd=ROOT, check=False, timeout=120)


def test_plan_yaml_lists_every_child_valid(tmp_path: Path) -> None:
    out = plan(tmp_path, "-o", "yaml", "--image", "registry.example/trainer:9")
    assert out.returncode == 0, out.stderr
    docs = list(yaml.safe_load_all(out.stdout))
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert names[:2] == [("ConfigMap", "demo-spec"), ("PersistentVolumeClaim", "demo-workspace")]
    jobs = {n for k, n in names if k == "Job"}
    assert jobs == {f"demo-{arm}-{stage}-0" for arm, stage in [
        ("vanilla", "rl"), ("vanilla", "evaluate"), ("polya", "generate"),
        ("polya", "midtrain"), ("polya", "rl"), ("polya", "evaluate")]}
    # the 2-node stage gets its headless Service before its Job, named like the Job
    assert names.index(("Service", "demo-polya-midtrain-0")) < \
        names.index(("Job", "demo-polya-midtrain-0"))
    assert [n for k, n in names if k == "Service"] == ["demo-polya-midtrain-0"]
    for d in docs:
        assert d["metadata"]["namespace"] == "team-a"
        kubernetes_validate.validate(d, K8S, strict=True)
        if d["kind"] == "Job":
            c = d["spec"]["template"]["spec"]["containers"][0]
            assert c["image"] == "registry.example/trainer:9"


def test_plan_objects_equal_the_builders(tmp_path: Path) -> None:
    """The same manifests as resources.job/configmap for the parsed spec (not a copy)."""
    from polya_trainer import spec as s

    out = plan(tmp_path, "-o", "json", "--image", "img:1")
    assert out.returncode == 0, out.stderr
    items = json.loads(out.stdout)["items"]
    run = s.load_runs(tmp_path / "run.yaml")[0]
    by = {(d["kind"], d["metadata"]["name"]): d for d in items}
    uid = by[("ConfigMap", "demo-spec")]["metadata"]["ownerReferences"][0]["uid"]
    meta = {"name": "demo", "namespace": "team-a", "uid": uid}
    spec = r.with_defaults(run.spec, {})
    assert by[("Job", "demo-polya-rl-0")] == r.job(meta, spec, "polya", "rl", 0, image="img:1")
    assert by[("ConfigMap", "demo-spec")] == json.loads(json.dumps(r.configmap(meta, spec)))


def test_plan_default_resources_option(tmp_path: Path) -> None:
    out = plan(tmp_path, "-o", "json", "--default-resources",
               '{"rl": {"cpu": "8", "memory": "32Gi"}}')
    assert out.returncode == 0, out.stderr
    items = {d["metadata"]["name"]: d for d in json.loads(out.stdout)["items"]}
    res = items["demo-polya-rl-0"]["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert res["requests"] == {"cpu": "8", "memory": "32Gi"}
    bad = plan(tmp_path, "-o", "json", "--default-resources", '{"nope": {}}')
    assert bad.returncode == 2 and "unknown stage" in bad.stderr


@pytest.mark.parametrize("args", [(), ("--image", "x:1")])
def test_plan_table_without_output(tmp_path: Path, args: tuple[str, ...]) -> None:
    out = plan(tmp_path, *args)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("PolyaRun demo: arms vanilla, polya")
    assert "job demo-polya-midtrain-0  gpus=4 nodes=2" in out.stdout


def test_plan_shows_the_derived_batch_sizes() -> None:
    """The paper sample's global sizes and the accumulation its 4 GPUs derive from them."""
    out = subprocess.run([sys.executable, "-m", "polya_operator.cli", "plan",
                          str(ROOT / "manifests" / "samples" / "paper-llama3b.yaml")],
                         capture_output=True, text=True, cwd=ROOT, check=False, timeout=120)
    assert out.returncode == 0, out.stderr
    rl = next(line for line in out.stdout.splitlines() if "polya-rl-0" in line)
    assert ("update=512 completions (4/process x 4 process(es) x 32 accumulation step(s)) "
            "rollout=128 prompts x 16 = 2048 completions") in rl
    mid = next(line for line in out.stdout.splitlines() if "polya-midtrain-0" in line)
    assert "update=128 examples (4/process x 4 process(es) x 8 accumulation step(s))" in mid
