"""Child manifests: valid against the real Kubernetes schemas, and carrying the contract."""

from __future__ import annotations

import re

import kubernetes_validate
import pytest
import yaml
from polya_operator import resources as r
from polya_trainer import spec as s
from polya_trainer.runtime.launcher import launch_command

META = {"name": "r1", "namespace": "team", "uid": "1234"}
K8S = "1.32.0"


def validate(manifest: dict) -> None:
    kubernetes_validate.validate(manifest, K8S, strict=True)


def spec(**kw) -> s.PolyaRunSpec:
    kw.setdefault("model", {"name": "org/model"})
    return s.parse_spec(kw)


def env(job: dict) -> dict:
    return {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_job_is_valid_and_restricted():
    sp = spec(model={"name": "org/m", "hubTokenSecret": {"name": "hf", "key": "tok"}},
              stages={"generate": {"resources": {
                  "gpus": 2, "cpu": "8", "memory": "64Gi", "nodeSelector": {"gpu": "a100"},
                  "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
                  "priorityClassName": "train", "affinity": {"nodeAffinity": {}}},
                  "activeDeadlineSeconds": 600}})
    job = r.job(META, sp, "polya", "generate", 3, image="img:1")
    validate(job)
    assert job["metadata"]["name"] == "r1-polya-generate-3"
    lab = job["metadata"]["labels"]
    assert lab[r.LABEL_ATTEMPT] == "3" and lab["app.kubernetes.io/managed-by"]
    assert job["metadata"]["ownerReferences"][0]["uid"] == "1234"
    pod = job["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["image"] == "img:1"
    assert c["command"] == ["python", "-m", "polya_trainer", "generate", "--spec",
                            "/etc/polya/run.yaml", "--workdir", "/workspace/r1", "--arm", "polya"]
    assert c["resources"]["limits"] == {"nvidia.com/gpu": "2", "cpu": "8", "memory": "64Gi"}
    assert pod["securityContext"]["fsGroup"] == r.RUN_AS
    assert pod["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and \
        sc["capabilities"] == {"drop": ["ALL"]} and not sc["allowPrivilegeEscalation"]
    # The termination message is a path of its own (the kubelet bind-mounts a file there, so
    # the atomically replaced progress file cannot be it) and the trainer is told where.
    assert c["terminationMessagePath"] == env(job)["POLYA_TERMINATION_MESSAGE_PATH"]["value"]
    assert c["terminationMessagePath"] != env(job)["POLYA_PROGRESS_FILE"]["value"]
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert env(job)["POLYA_PROGRESS_FILE"]["value"].rsplit("/", 1)[0] in mounts  # writable
    assert env(job)["HF_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "hf", "key": "tok"}}
    assert "value" not in env(job)["HF_TOKEN"]
    assert pod["nodeSelector"] == {"gpu": "a100"} and pod["priorityClassName"] == "train"
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["activeDeadlineSeconds"] == 600
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "Ignore", "onPodConditions": [
        {"type": "DisruptionTarget", "status": "True"}]}
    claims = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claims[0]["persistentVolumeClaim"]["claimName"] == "r1-workspace"


def test_sweep_report_job_is_valid_and_restricted():
    """The sweep's report step (polya_operator/sweep.py): the volume, no token, no API."""
    sp = spec(model={"name": "org/m", "hubTokenSecret": {"name": "hf", "key": "tok"}},
              sweep={"seeds": [1, 2]}, serviceAccountName="runner")
    job = r.sweep_report_job(META, sp, image="img:1")
    validate(job)
    assert job["metadata"]["name"] == "r1-report"
    assert job["metadata"]["labels"][r.LABEL_RUN] == "r1"  # in the operator's Job index
    pod = job["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["command"] == ["python", "-m", "polya_trainer.cli", "sweep-report", "--spec",
                            r.SPEC_FILE, "--workdir", "/workspace/r1", "--variants",
                            "/workspace"]
    assert set(env(job)) == {"HOME", "PYTHONUNBUFFERED"}
    assert not pod["automountServiceAccountToken"] and pod["serviceAccountName"] == "runner"
    assert c["securityContext"]["readOnlyRootFilesystem"]
    assert {v["name"] for v in pod["volumes"]} == {"spec", "workspace", "tmp"}
    stored = r.sweep_report_job(META, spec(sweep={"seeds": [1]}, storage={
        "uri": "s3://b/r1", "credentialsSecret": "keys"}))
    validate(stored)
    assert "emptyDir" in next(v for v in stored["spec"]["template"]["spec"]["volumes"]
                              if v["name"] == "workspace")
    assert env(stored)["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "keys"


def test_storage_variants():
    job = r.job(META, spec(storage={"pvc": "shared"}), "polya", "rl", 0)
    vols = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert vols["workspace"]["persistentVolumeClaim"]["claimName"] == "shared"
    job = r.job(META, spec(storage={"uri": "s3://bucket/x"}), "polya", "rl", 0)
    vols = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in vols["workspace"] and env(job)["POLYA_STORAGE_URI"]["value"] == \
        "s3://bucket/x"
    assert not r.creates_claim(spec(storage={"pvc": "shared"}))
    claim = r.pvc(META, spec(storage={"size": "5Gi", "storageClass": "fast"}))
    validate(claim)
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert claim["spec"]["storageClassName"] == "fast"


def test_the_workspace_claim_outlives_the_run_unless_asked():
    """Garbage collection deletes a dependent whose owners are all gone (kubernetes
    pkg/controller/garbagecollector/garbagecollector.go, attemptToDeleteItem): a claim with
    no ownerReference is never collected. Retain is the default; Delete is opt-in."""
    kept = r.pvc(META, spec())
    assert "ownerReferences" not in kept["metadata"]
    assert kept["metadata"]["labels"][r.LABEL_RUN] == META["name"]  # still findable
    owned = r.pvc(META, spec(storage={"whenDeleted": "Delete"}))
    assert owned["metadata"]["ownerReferences"][0]["uid"] == META["uid"]
    # The other children are always owned by the run.
    assert r.configmap(META, spec())["metadata"]["ownerReferences"][0]["uid"] == META["uid"]


def test_workspace_access_mode():
    assert r.pvc(META, spec())["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert not r.parallel_arms(spec())
    rwx = spec(storage={"accessMode": "ReadWriteMany"})
    assert r.pvc(META, rwx)["spec"]["accessModes"] == ["ReadWriteMany"] and r.parallel_arms(rwx)
    multi = spec(stages={"rl": {"resources": {"nodes": 2, "gpus": 1}}})
    assert r.pvc(META, multi)["spec"]["accessModes"] == ["ReadWriteMany"]
    assert r.parallel_arms(spec(storage={"uri": "s3://b/x"}))
    assert not r.parallel_arms(spec(storage={"pvc": "shared"}))  # undeclared: assume RWO


def test_shards_on_a_read_write_once_claim_share_one_node():
    """A ReadWriteOnce volume attaches to one node (a second node's pod hangs in
    ContainerCreating with a Multi-Attach error: kubernetes pkg/controller/volume/
    attachdetach/reconciler/reconciler.go), but every pod on that node may mount it. The
    indices of a sharded stage get a required pod affinity to the attempt's own pods on one
    hostname; the scheduler lets the first one go anywhere (interpodaffinity/filtering.go,
    satisfyPodAffinity: no pod matches yet and the pod matches its own term)."""
    user = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "gpu", "operator": "In", "values": ["a100"]}]}]}}}
    sp = spec(stages={"evaluate": {"shards": 4, "resources": {"gpus": 1, "affinity": user}}})
    job = r.job(META, sp, "polya", "evaluate", 2)
    validate(job)
    assert job["spec"]["parallelism"] == 4
    tmpl = job["spec"]["template"]
    affinity = tmpl["spec"]["affinity"]
    assert affinity["nodeAffinity"] == user["nodeAffinity"]  # the run's own affinity kept
    (term,) = affinity["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    selector = term["labelSelector"]["matchLabels"]
    # The pods match their own term (the first one may schedule), and only this attempt's
    # pods do: its run, arm, stage and attempt.
    assert selector.items() <= tmpl["metadata"]["labels"].items()
    assert selector[r.LABEL_ATTEMPT] == "2" and selector[r.LABEL_STAGE] == "evaluate"
    assert "podAffinity" not in sp.stages.evaluate.resources.affinity  # not changed in place
    # An existing claim declared ReadWriteOnce (or undeclared) is treated alike.
    for storage in ({"pvc": "data"}, {"pvc": "data", "accessMode": "ReadWriteOnce"}):
        sp = spec(storage=storage, stages={"generate": {"shards": 2}})
        assert "podAffinity" in r.job(META, sp, "polya", "generate", 0)["spec"]["template"][
            "spec"]["affinity"]
    # One pod, a ReadWriteMany claim or an object store: the pods may go anywhere.
    for sp in (spec(), spec(storage={"accessMode": "ReadWriteMany"},
                            stages={"generate": {"shards": 2}}),
               spec(storage={"uri": "s3://b/x"}, stages={"generate": {"shards": 2}})):
        assert "affinity" not in r.job(META, sp, "polya", "generate", 0)["spec"]["template"][
            "spec"]


def test_a_read_write_once_pod_claim_is_created_as_declared():
    sp = spec(storage={"accessMode": "ReadWriteOncePod"})
    claim = r.pvc(META, sp)
    validate(claim)
    assert claim["spec"]["accessModes"] == ["ReadWriteOncePod"] and not r.parallel_arms(sp)


def test_kueue_jobs_start_suspended_with_the_queue_label():
    job = r.job(META, spec(queueName="gpu-queue"), "vanilla", "rl", 0)
    validate(job)
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"][r.KUEUE_QUEUE] == "gpu-queue"


def test_multi_node_is_an_indexed_job_with_a_headless_service():
    sp = spec(stages={"rl": {"resources": {"gpus": 8, "nodes": 2}}})
    job = r.job(META, sp, "polya", "rl", 1)
    validate(job)
    js = job["spec"]
    assert (js["completionMode"], js["completions"], js["parallelism"]) == ("Indexed", 2, 2)
    cmd = js["template"]["spec"]["containers"][0]["command"]
    assert cmd[:4] == ["accelerate", "launch", "--num_processes", "16"]
    assert "$(JOB_COMPLETION_INDEX)" in cmd and "r1-polya-rl-1-0.r1-polya-rl-1" in cmd
    assert "JOB_COMPLETION_INDEX" in env(job)
    assert js["template"]["spec"]["subdomain"] == "r1-polya-rl-1"
    svc = r.service(META, "r1-polya-rl-1", "polya", "rl")
    validate(svc)
    assert svc["spec"]["clusterIP"] == "None"
    assert r.pvc(META, sp)["spec"]["accessModes"] == ["ReadWriteMany"]


def test_launcher_single_node_multi_gpu_uses_accelerate():
    cmd = launch_command("midtrain", "/s.yaml", "/w", "polya", gpus=4)
    assert cmd[:4] == ["accelerate", "launch", "--num_processes", "4"]
    # inference stages shard themselves: one process
    assert launch_command("generate", "/s.yaml", "/w", "polya", gpus=4)[0] == "python"
    with pytest.raises(ValueError):
        launch_command("rl", "/s.yaml", "/w", "polya", gpus=1, nodes=2)  # no Job name


def test_configmap_holds_the_resolved_run():
    cm = r.configmap(META, spec(arms=["vanilla"]))
    validate(cm)
    doc = yaml.safe_load(cm["data"]["run.yaml"])
    run = s.parse_run(doc)
    assert run.metadata.name == "r1" and run.spec.arms == ["vanilla"]
    assert doc["spec"]["stages"]["rl"]["numGenerations"] == 16  # defaults resolved


def test_spec_file_floats_survive_a_yaml_1_1_loader():
    sp = spec(stages={"midtrain": {"learningRate": 1e-05}, "rl": {"learningRate": 2.5e-7,
                                                                    "beta": 0.04}})
    text = r.configmap(META, sp)["data"]["run.yaml"]
    doc = yaml.safe_load(text)
    assert doc["spec"]["stages"]["midtrain"]["learningRate"] == 1e-05
    assert doc["spec"]["stages"]["rl"]["learningRate"] == 2.5e-7
    assert s.parse_run(doc).spec == sp
    weird = r.yaml_json({"a": "1e-05", "b": "x\u0000Fy", "c": 1e20, "d": [0.5]})
    assert yaml.safe_load(weird) == {"a": "1e-05", "b": "x\u0000Fy", "c": 1e20, "d": [0.5]}


CHART_DEFAULTS = ('{"generate": {"gpus": 1, "cpu": "8", "memory": "64Gi"}, '
                  '"rl": {"gpus": 4, "cpu": "32", "memory": "256Gi"}}')


def test_default_resources_from_the_chart_fill_only_unset_fields(monkeypatch):
    from polya_operator import executor as p

    monkeypatch.setenv(r.DEFAULT_RESOURCES_ENV, CHART_DEFAULTS)
    sp = p.parse({"model": {"name": "org/model"},
                 "stages": {"generate": {"resources": {"gpus": 2, "cpu": "2"}}}})
    assert isinstance(sp, s.PolyaRunSpec)
    gen, rl, ev = sp.stages.generate.resources, sp.stages.rl.resources, \
        sp.stages.evaluate.resources
    assert (gen.gpus, gen.cpu, gen.memory) == (2, "2", "64Gi")  # the run's fields win
    assert (rl.gpus, rl.cpu, rl.memory) == (4, "32", "256Gi")  # no resources: all defaults
    assert (ev.gpus, ev.cpu, ev.memory) == (1, None, None)  # no default for this stage
    job = r.job(META, sp, "polya", "rl", 0)
    validate(job)
    res = job["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert res == {"limits": {"nvidia.com/gpu": "4", "cpu": "32", "memory": "256Gi"},
                   "requests": {"cpu": "32", "memory": "256Gi"}}
    # The spec file the stages read says the same as what the pods request.
    doc = yaml.safe_load(r.configmap(META, sp)["data"]["run.yaml"])
    assert doc["spec"]["stages"]["generate"]["resources"]["memory"] == "64Gi"
    # A CPU stage (gpus: 0) takes none of the GPU-sized defaults (issue 13: the CPU samples
    # asked for 32 CPUs and 256Gi and never scheduled).
    cpu = p.parse({"model": {"name": "org/model"},
                   "stages": {"generate": {"resources": {"gpus": 0}},
                              "rl": {"resources": {"gpus": 0, "memory": "4Gi"}}}})
    assert isinstance(cpu, s.PolyaRunSpec)
    gen, rl = cpu.stages.generate.resources, cpu.stages.rl.resources
    assert (gen.gpus, gen.cpu, gen.memory) == (0, None, None)
    assert (rl.gpus, rl.cpu, rl.memory) == (0, None, "4Gi")
    monkeypatch.delenv(r.DEFAULT_RESOURCES_ENV)
    # unset: the contract's defaults
    assert p.parse({"model": {"name": "m"}}).stages.rl.resources.cpu is None


@pytest.mark.parametrize("raw, field", [
    ('{"train": {"gpus": 1}}', "unknown stage 'train'"),
    ('{"rl": {"cpu": "lots"}}', "POLYA_DEFAULT_RESOURCES.rl"),
    ('{"rl": {"gpus": "4"}}', "POLYA_DEFAULT_RESOURCES.rl"),
    ("[1]", "must map stage names"),
    ("{oops", "not JSON"),
])
def test_bad_default_resources_are_named(raw, field):
    with pytest.raises(ValueError, match=re.escape(field)):
        r.default_resources(raw)


def test_operator_refuses_to_start_with_bad_default_resources(monkeypatch):
    from polya_operator.handlers import Config

    monkeypatch.setenv(r.DEFAULT_RESOURCES_ENV, '{"rl": {"memory": "a lot"}}')
    with pytest.raises(ValueError, match=r"POLYA_DEFAULT_RESOURCES\.rl"):
        Config()


def test_the_charts_default_resources_are_accepted():
    """The chart hands ``trainer.defaultResources`` to the operator as JSON (toJson)."""
    import json
    from pathlib import Path

    values = yaml.safe_load((Path(__file__).resolve().parents[2] / "charts" / "polyarun" /
                             "values.yaml").read_text())
    raw = json.dumps(values["trainer"]["defaultResources"])
    defaults = r.default_resources(raw)
    assert set(defaults) == set(s.STAGES)
    sp = r.with_defaults(spec(), defaults)
    assert sp.stages.rl.resources.gpus == defaults["rl"]["gpus"]
    assert sp.stages.midtrain.resources.memory == defaults["midtrain"]["memory"]


def test_cpu_samples_fit_a_small_node(monkeypatch):
    """Every stage of the CPU samples, under the chart's default resources, asks for no GPU
    and at most 4 CPUs and 16Gi (a kind node or a laptop)."""
    import sys
    from pathlib import Path

    from polya_operator import executor as p

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
    import helm_render

    objs = helm_render.objects(helm_render.render({}))
    (dep,) = [o for o in objs if o["kind"] == "Deployment"]
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0][
        "env"]}
    monkeypatch.setenv(r.DEFAULT_RESOURCES_ENV, env[r.DEFAULT_RESOURCES_ENV])
    root = Path(__file__).resolve().parents[2] / "manifests" / "samples"
    for sample in ("toy-cpu.yaml", "smollm2-cpu.yaml"):
        for doc in yaml.safe_load_all((root / sample).read_text()):
            sp = p.parse(doc["spec"])
            assert isinstance(sp, s.PolyaRunSpec), sp
            for stage in s.STAGES:
                job = r.job({**META, "name": doc["metadata"]["name"]}, sp, "polya", stage, 0)
                res = job["spec"]["template"]["spec"]["containers"][0]["resources"]
                limits = res.get("limits", {})
                assert "nvidia.com/gpu" not in limits, (sample, stage, res)
                assert float(limits.get("cpu", "0")) <= 4, (sample, stage, res)
                memory = limits.get("memory", "0Gi")
                assert memory.endswith("Gi") and float(memory[:-2]) <= 16, (sample, stage, res)
