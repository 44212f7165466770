"""Manifests of the children of a PolyaRun: Job, ConfigMap, PVC, headless Service (pure).

Retry model (one model, chosen on purpose): **the planner retries, Kubernetes does not.**
Each attempt of a stage is its own Job ``<run>-<arm>-<stage>-<attempt>`` with
``backoffLimit: 0``, so a counted pod failure fails the Job at once and the planner decides
whether to start the next attempt (up to the stage's ``backoffLimit``), with the attempt
visible in the name, the labels and ``status.stages[].attempts``. The Job's
``podFailurePolicy`` keeps disruptions (preemption, node drain: the pod condition
``DisruptionTarget``) out of that count: the Job controller simply starts a new pod, and the
trainer resumes from its last checkpoint in the workspace. Exit code 2 (the entrypoint was
given bad arguments) fails the Job with reason PodFailurePolicy and is never retried.

Jobs get no ``ttlSecondsAfterFinished``: attempts are counted from the Jobs that exist, so
they must live as long as the run; the planner deletes them ``spec.ttlSecondsAfterFinished``
after the whole run finished.
"""

from __future__ import annotations

import copy
import json
import os
import re
from typing import Any

from polya_trainer import spec as s
from polya_trainer.engine.planner import (  # the planner owns child names and labels
    LABEL_ARM,
    LABEL_ATTEMPT,
    LABEL_RUN,
    LABEL_STAGE,
)
from polya_trainer.engine.planner import child_name as job_name
from polya_trainer.runtime.launcher import launch_command
from polya_trainer.runtime.workspace import Workspace

KUEUE_QUEUE = "kueue.x-k8s.io/queue-name"
SPEC_DIR = "/etc/polya"
SPEC_FILE = f"{SPEC_DIR}/run.yaml"
PROGRESS_DIR = "/polya/progress"
PROGRESS_FILE = f"{PROGRESS_DIR}/progress.json"  # live progress, replaced atomically
# The kubelet bind-mounts a host file here, so the trainer writes it in place (a rename onto
# it fails with EBUSY); it is a path of its own, never the progress file.
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
METRICS_PORT = 9400
DEFAULT_IMAGE = "ghcr.io/polyarun/trainer:0.1.0"
DEFAULT_STORAGE = "100Gi"
RUN_AS = 1000
_FLOAT = "\x00F"


def yaml_json(doc: Any) -> str:
    """JSON that YAML 1.1 loaders read back identically (25x faster than a YAML dump).

    JSON is YAML except for floats such as ``1e-05``, which YAML 1.1 reads as a string: they
    are written ``1.0e-05``.
    """
    def mark(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: mark(v) for k, v in x.items()}
        if isinstance(x, list):
            return [mark(v) for v in x]
        if isinstance(x, float):
            text = repr(x)
            mant, e, exp = text.partition("e")
            if e and "." not in mant:
                text = f"{mant}.0e{exp if exp[0] in '+-' else '+' + exp}"
            return _FLOAT + text
        return x

    text = json.dumps(mark(doc), indent=1, ensure_ascii=False)
    return re.sub(r'"\\u0000F([^"]*)"', r"\1", text) + "\n"


def default_image() -> str:
    return os.environ.get("POLYA_TRAINER_IMAGE", DEFAULT_IMAGE)


DEFAULT_RESOURCES_ENV = "POLYA_DEFAULT_RESOURCES"
_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {}  # raw env text -> parsed


def default_resources(raw: str | None = None) -> dict[str, dict[str, Any]]:
    """Per-stage resource defaults (the chart's ``trainer.defaultResources``), from JSON in
    $POLYA_DEFAULT_RESOURCES: ``{"rl": {"gpus": 4, "cpu": "32", "memory": "256Gi"}, ...}``
    with camelCase keys as in ``spec.stages.<stage>.resources``. {} when unset.

    Raises ValueError naming the bad entry (the operator checks this at startup).
    """
    raw = os.environ.get(DEFAULT_RESOURCES_ENV, "") if raw is None else raw
    if raw not in _DEFAULTS:
        try:
            data = json.loads(raw) if raw.strip() not in ("", "null") else {}
        except ValueError as exc:
            raise ValueError(f"{DEFAULT_RESOURCES_ENV} is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{DEFAULT_RESOURCES_ENV} must map stage names to resources")
        out: dict[str, dict[str, Any]] = {}
        for stage, res in data.items():
            if stage not in s.STAGES:
                raise ValueError(f"{DEFAULT_RESOURCES_ENV}: unknown stage {stage!r} "
                                 f"(one of {', '.join(s.STAGES)})")
            if res is None:
                continue
            try:
                s.Resources.model_validate(res)
            except ValueError as exc:
                raise ValueError(f"{DEFAULT_RESOURCES_ENV}.{stage}: {exc}") from None
            out[stage] = dict(res)
        _DEFAULTS[raw] = out
    return _DEFAULTS[raw]


def with_defaults(spec: s.PolyaRunSpec,
                  defaults: dict[str, dict[str, Any]] | None = None) -> s.PolyaRunSpec:
    """The spec with the operator's per-stage resource defaults filled in.

    A field the PolyaRun sets in ``stages.<stage>.resources`` wins; a field it leaves unset
    takes the default (a stage without ``resources`` at all takes every default field, over
    the contract's built-in GPU count). A stage that asks for ``gpus: 0`` where the default
    has GPUs runs on CPU and takes none of that stage's defaults: they describe a GPU node
    (the chart's are 32 CPUs and 256Gi), and a CPU pod sized like that would never schedule
    on a small node. The result is what the Jobs request and what the spec ConfigMap
    carries, so the trainer sees the same GPU count as the scheduler.
    """
    defaults = default_resources() if defaults is None else defaults
    if not defaults:
        return spec
    data = spec.dump()
    for stage, extra in defaults.items():
        cfg: s.StageBase = getattr(spec.stages, stage)
        res = cfg.resources
        user_set = "resources" in cfg.model_fields_set
        keep = {s.Resources.model_fields[f].alias or f for f in res.model_fields_set} \
            if user_set else set()
        if "gpus" in keep and res.gpus == 0 and (extra.get("gpus") or 0) > 0:
            continue  # a CPU stage: the GPU-sized defaults do not apply
        full = res.model_dump(mode="json", by_alias=True, exclude_none=True)
        full.update({k: v for k, v in extra.items() if k not in keep})
        data.setdefault("stages", {}).setdefault(stage, {})["resources"] = full
    return s.parse_spec(data)


def spec_configmap_name(run: str, generation: int | None = None) -> str:
    """The spec snapshot of one spec generation: ``<run>-spec`` for the first,
    ``<run>-spec-<generation>`` after each edit (see ``configmap``)."""
    return f"{run}-spec" if (generation or 1) == 1 else f"{run}-spec-{generation}"


def workspace_claim_name(run: str) -> str:
    return f"{run}-workspace"


def owner_reference(meta: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": s.API_VERSION, "kind": s.KIND, "name": meta["name"],
            "uid": meta.get("uid", ""), "controller": True, "blockOwnerDeletion": True}


def labels(run: str, component: str, **extra: str) -> dict[str, str]:
    out = {"app.kubernetes.io/name": "polyarun", "app.kubernetes.io/instance": run,
           "app.kubernetes.io/component": component,
           "app.kubernetes.io/managed-by": "polya-operator",
           "app.kubernetes.io/part-of": "polyarun", LABEL_RUN: run}
    out.update(extra)
    return out


def _meta(meta: dict[str, Any], name: str, component: str, **extra: str) -> dict[str, Any]:
    return {"name": name, "namespace": meta.get("namespace"),
            "labels": labels(meta["name"], component, **extra),
            "ownerReferences": [owner_reference(meta)]}


def access_mode(spec: s.PolyaRunSpec) -> str:
    """The workspace's access mode: ``spec.storage.accessMode``, else ReadWriteMany when a
    stage's pods span several nodes and ReadWriteOnce otherwise."""
    if spec.storage.access_mode:
        return spec.storage.access_mode
    multi_node = any(getattr(spec.stages, st).resources.nodes > 1 for st in s.STAGES)
    return "ReadWriteMany" if multi_node else "ReadWriteOnce"


def parallel_arms(spec: s.PolyaRunSpec) -> bool:
    """Whether the arms may run at once: their pods may land on different nodes, and a
    ReadWriteOnce volume attaches to one node only (kubernetes
    pkg/controller/volume/attachdetach/reconciler/reconciler.go: a second attach of a
    non-multi-attachable volume is refused with a "Multi-Attach error" event and the pod
    hangs in ContainerCreating). An object store (``storage.uri``) gives each pod its own
    emptyDir, so its arms run in parallel too."""
    return spec.storage.uri is not None or access_mode(spec) == "ReadWriteMany"


def colocated(spec: s.PolyaRunSpec, stage: str) -> bool:
    """Whether a stage's pods must share one node: a sharded stage (several pods at once) on
    a ReadWriteOnce claim, which attaches to one node but may be mounted by every pod there.
    (ReadWriteOncePod allows one pod: the contract refuses shards with it.)"""
    return getattr(getattr(spec.stages, stage), "shards", 1) > 1 and \
        spec.storage.uri is None and access_mode(spec) == "ReadWriteOnce"


def _with_colocation(affinity: dict[str, Any] | None, pod_labels: dict[str, str]
                     ) -> dict[str, Any]:
    """``affinity`` plus a required pod affinity to the Job's own pods on one hostname.

    The first pod of the Job finds no pod that matches the term, and the scheduler lets a
    pod that matches its own term go first (kubernetes pkg/scheduler/framework/plugins/
    interpodaffinity/filtering.go, satisfyPodAffinity: no matching pod in the cluster and
    the pod matches its own terms); each later index then goes to the node of the first.
    The selector is the attempt's own labels, which no other pod carries."""
    out = copy.deepcopy(affinity or {})
    terms = out.setdefault("podAffinity", {}).setdefault(
        "requiredDuringSchedulingIgnoredDuringExecution", [])
    terms.append({"labelSelector": {"matchLabels": {k: pod_labels[k] for k in (
        LABEL_RUN, LABEL_ARM, LABEL_STAGE, LABEL_ATTEMPT)}},
        "topologyKey": "kubernetes.io/hostname"})
    return out


def creates_claim(spec: s.PolyaRunSpec) -> bool:
    """A `<run>-workspace` claim is created unless an existing claim or a URI is given."""
    return spec.storage.pvc is None and spec.storage.uri is None


def configmap(meta: dict[str, Any], spec: s.PolyaRunSpec) -> dict[str, Any]:
    """The resolved PolyaRun (defaults filled in) that every stage reads at SPEC_FILE.

    One immutable ConfigMap per spec generation, and each Job mounts the one of the
    generation it was created under: a pod that replaces a preempted one (same Job, same pod
    template) reads the spec its attempt started with, never a later edit. A ConfigMap
    volume follows updates of its object (the kubelet refreshes it), so rewriting one in
    place would change a running attempt's spec under it.
    """
    doc = {"apiVersion": s.API_VERSION, "kind": s.KIND,
           "metadata": {"name": meta["name"], "namespace": meta.get("namespace")},
           "spec": spec.dump()}
    name = spec_configmap_name(meta["name"], meta.get("generation"))
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(meta, name, "spec"),
            "immutable": True, "data": {"run.yaml": yaml_json(doc)}}


def pvc(meta: dict[str, Any], spec: s.PolyaRunSpec) -> dict[str, Any]:
    """The workspace claim. It holds the trained models, so by default
    (``storage.whenDeleted: Retain``) it has no ownerReference and outlives the run, like a
    StatefulSet's claims under ``persistentVolumeClaimRetentionPolicy.whenDeleted: Retain``;
    with ``Delete`` the run owns it and garbage collection removes it with the run."""
    body: dict[str, Any] = {
        "accessModes": [access_mode(spec)],
        "resources": {"requests": {"storage": spec.storage.size or DEFAULT_STORAGE}},
    }
    if spec.storage.storage_class:
        body["storageClassName"] = spec.storage.storage_class
    metadata = _meta(meta, workspace_claim_name(meta["name"]), "workspace")
    if spec.storage.when_deleted == "Retain":
        del metadata["ownerReferences"]
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": metadata,
            "spec": body}


def service(meta: dict[str, Any], name: str, arm: str, stage: str) -> dict[str, Any]:
    """Headless Service giving an Indexed Job's pods stable DNS names for the rendezvous."""
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": _meta(meta, name, "rendezvous", **{LABEL_ARM: arm, LABEL_STAGE: stage}),
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                     "selector": {"batch.kubernetes.io/job-name": name},
                     "ports": [{"name": "rendezvous", "port": 29500}]}}


def _resources(res: s.Resources) -> dict[str, Any]:
    limits: dict[str, str] = {}
    requests: dict[str, str] = {}
    if res.gpus:
        limits[res.gpu_resource] = str(res.gpus)
    if res.cpu:
        limits["cpu"] = requests["cpu"] = res.cpu
    if res.memory:
        limits["memory"] = requests["memory"] = res.memory
    out: dict[str, Any] = {}
    if limits:
        out["limits"] = limits
    if requests:
        out["requests"] = requests
    return out


def _store_credentials(spec: s.PolyaRunSpec) -> list[dict[str, Any]]:
    """The object store's keys (S3), only by reference to ``storage.credentialsSecret``."""
    if not (spec.storage.uri and spec.storage.credentials_secret):
        return []
    return [{"name": key, "valueFrom": {"secretKeyRef": {
        "name": spec.storage.credentials_secret, "key": key,
        **({"optional": True} if key == "AWS_SESSION_TOKEN" else {})}}}
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")]


def _env(spec: s.PolyaRunSpec, arm: str, stage: str, nodes: int) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "POLYA_PROGRESS_FILE", "value": PROGRESS_FILE},
        {"name": "POLYA_TERMINATION_MESSAGE_PATH", "value": TERMINATION_MESSAGE_PATH},
        {"name": "POLYA_METRICS_PORT", "value": str(METRICS_PORT)},
        {"name": "POLYA_ARM", "value": arm},
        {"name": "POLYA_STAGE", "value": stage},
        {"name": "HF_HOME", "value": "/cache/huggingface"},
        {"name": "HOME", "value": "/tmp"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    if spec.storage.uri:
        env.append({"name": "POLYA_STORAGE_URI", "value": spec.storage.uri})
    if getattr(spec.stages, stage).resources.gpus > 0:  # no usable CUDA: fail, never CPU
        env.append({"name": "POLYA_REQUIRE_CUDA", "value": "1"})
    env += _store_credentials(spec)
    if nodes > 1:  # declared so that $(JOB_COMPLETION_INDEX) expands in the command
        env.append({"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
            "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}})
    # Credentials only as secretKeyRefs: the values never enter the Job or the ConfigMap.
    tracking = spec.tracking
    for name, ref in (("HF_TOKEN", spec.model.hub_token_secret),
                      ("MLFLOW_TRACKING_TOKEN", tracking.mlflow and tracking.mlflow.token_secret),
                      ("WANDB_API_KEY", tracking.wandb and tracking.wandb.api_key_secret)):
        if ref:
            env.append({"name": name, "valueFrom": {"secretKeyRef": {
                "name": ref.name, "key": ref.key}}})
    return env


def _volumes(meta: dict[str, Any], spec: s.PolyaRunSpec) -> list[dict[str, Any]]:
    if spec.storage.uri:
        workspace: dict[str, Any] = {"name": "workspace", "emptyDir": {}}
    else:
        claim = spec.storage.pvc or workspace_claim_name(meta["name"])
        workspace = {"name": "workspace", "persistentVolumeClaim": {"claimName": claim}}
    return [
        {"name": "spec", "configMap": {"name": spec_configmap_name(
            meta["name"], meta.get("generation"))}},
        workspace,
        {"name": "tmp", "emptyDir": {}},
        {"name": "hf-cache", "emptyDir": {}},
        {"name": "progress", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        {"name": "dshm", "emptyDir": {"medium": "Memory"}},
    ]


def _container_security() -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS,
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def _pod_spec(spec: s.PolyaRunSpec, container: dict[str, Any],
              volumes: list[dict[str, Any]]) -> dict[str, Any]:
    """A trainer-image pod: non-root, no API access, never restarted in place."""
    out: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": volumes,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        # OnRootMismatch: the kubelet re-owns the workspace (every checkpoint and shard) for
        # fsGroup only when its root does not match yet, not on each pod start
        # (pkg/volume/volume_linux.go, skipPermissionChange).
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS,
                            "fsGroup": RUN_AS, "fsGroupChangePolicy": "OnRootMismatch",
                            "seccompProfile": {"type": "RuntimeDefault"}},
    }
    if spec.service_account_name:
        out["serviceAccountName"] = spec.service_account_name
    return out


def job(meta: dict[str, Any], spec: s.PolyaRunSpec, arm: str, stage: str, attempt: int,
        image: str | None = None) -> dict[str, Any]:
    """The batch/v1 Job of one attempt of one (arm, stage)."""
    cfg: s.StageBase = getattr(spec.stages, stage)
    res = cfg.resources
    shards = getattr(cfg, "shards", 1)  # generate/evaluate split over an Indexed Job
    name = job_name(meta["name"], arm, stage, attempt)
    run = meta["name"]
    workdir = str(Workspace.for_run(spec.storage.mount_path, run))
    command = launch_command(stage, SPEC_FILE, workdir, arm, gpus=res.gpus, nodes=res.nodes,
                             job_name=name, processes=res.processes_per_node)
    child = {LABEL_ARM: arm, LABEL_STAGE: stage, LABEL_ATTEMPT: str(attempt)}
    pod_labels = labels(run, "trainer", **child)
    if spec.queue_name:
        pod_labels[KUEUE_QUEUE] = spec.queue_name
    container: dict[str, Any] = {
        "name": "trainer",
        "image": spec.image or image or default_image(),
        "imagePullPolicy": spec.image_pull_policy,
        "command": command,
        "env": _env(spec, arm, stage, max(res.nodes, shards)),  # >1: indexed
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "resources": _resources(res),
        "volumeMounts": [
            {"name": "spec", "mountPath": SPEC_DIR, "readOnly": True},
            {"name": "workspace", "mountPath": spec.storage.mount_path},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "hf-cache", "mountPath": "/cache"},
            {"name": "progress", "mountPath": PROGRESS_DIR},
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "File",
        "securityContext": _container_security(),
    }
    pod_spec = _pod_spec(spec, container, _volumes(meta, spec))
    pod_spec["terminationGracePeriodSeconds"] = 120  # time to write a checkpoint on SIGTERM
    if res.node_selector:
        pod_spec["nodeSelector"] = dict(res.node_selector)
    if res.tolerations:
        pod_spec["tolerations"] = [t.dump() for t in res.tolerations]
    if colocated(spec, stage):
        pod_spec["affinity"] = _with_colocation(res.affinity, pod_labels)
    elif res.affinity:
        pod_spec["affinity"] = res.affinity
    if res.priority_class_name:
        pod_spec["priorityClassName"] = res.priority_class_name
    if res.nodes > 1:
        pod_spec["subdomain"] = name
    job_spec: dict[str, Any] = {
        "backoffLimit": 0,
        "podFailurePolicy": {"rules": [
            {"action": "Ignore",
             "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailJob",
             "onExitCodes": {"containerName": "trainer", "operator": "In", "values": [2]}},
        ]},
        "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
    }
    if cfg.active_deadline_seconds:
        job_spec["activeDeadlineSeconds"] = cfg.active_deadline_seconds
    if res.nodes > 1:
        job_spec.update(completionMode="Indexed", completions=res.nodes, parallelism=res.nodes)
    if shards > 1:
        # Each index does its part of the work (polya_trainer.runtime.shards) and is retried
        # alone, up to the stage's backoffLimit (backoffLimitPerIndex: backoffLimit then
        # defaults to unlimited, so it is left out). More than half the indices failed means
        # a systematic fault: the Job stops. A Job failed for its indices (FailedIndexes,
        # MaxFailedIndexesExceeded) is not retried by the planner: one budget per index.
        del job_spec["backoffLimit"]
        job_spec.update(completionMode="Indexed", completions=shards, parallelism=shards,
                        backoffLimitPerIndex=cfg.backoff_limit, maxFailedIndexes=shards // 2)
    if spec.queue_name:
        job_spec["suspend"] = True  # Kueue admits (unsuspends) it
    job_labels = labels(run, "trainer", **child)
    if spec.queue_name:
        job_labels[KUEUE_QUEUE] = spec.queue_name
    metadata = _meta(meta, name, "trainer", **child)
    metadata["labels"] = job_labels
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}


def sweep_report_job_name(run: str) -> str:
    return f"{run}-report"


def sweep_report_job(meta: dict[str, Any], spec: s.PolyaRunSpec,
                     image: str | None = None) -> dict[str, Any]:
    """The Job that writes a sweep's report once every variant succeeded (the sweep planner's
    WriteReport): ``polya sweep-report`` on the sweep's spec snapshot (``configmap``), over
    the variants' workspaces side by side on the volume, into ``<mountPath>/<run>/report/``.
    With ``storage.uri`` the pod reads the variants' results from the store and uploads the
    report to ``<uri>/report/``. Small and CPU-only; one retry."""
    run, mount = meta["name"], spec.storage.mount_path
    volumes = [v for v in _volumes(meta, spec) if v["name"] in ("spec", "workspace", "tmp")]
    env = [{"name": "HOME", "value": "/tmp"}, {"name": "PYTHONUNBUFFERED", "value": "1"},
           *_store_credentials(spec)]
    container = {
        "name": "report", "image": spec.image or image or default_image(),
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["python", "-m", "polya_trainer.cli", "sweep-report", "--spec", SPEC_FILE,
                    "--workdir", str(Workspace.for_run(mount, run)), "--variants", mount],
        "env": env,
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "2Gi"}},
        "volumeMounts": [{"name": "spec", "mountPath": SPEC_DIR, "readOnly": True},
                         {"name": "workspace", "mountPath": mount},
                         {"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": _container_security(),
    }
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": _meta(meta, sweep_report_job_name(run), "sweep-report"),
            "spec": {"backoffLimit": 1, "template": {
                "metadata": {"labels": labels(run, "sweep-report")},
                "spec": _pod_spec(spec, container, volumes)}}}
