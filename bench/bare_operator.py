"""The baseline for bench/operator_burst.py: a bare kopf operator that only creates one Job
per PolyaRun (an on.create handler, kopf's usual bookkeeping) through the same HTTP client."""

from __future__ import annotations

import os
from typing import Any

import kopf
from polya_operator import kube

JOB = {"apiVersion": "batch/v1", "kind": "Job",
       "spec": {"backoffLimit": 0, "template": {"spec": {
           "restartPolicy": "Never",
           "containers": [{"name": "main", "image": "busybox", "command": ["true"]}]}}}}


@kopf.on.login()
def login(**kwargs: Any) -> Any:
    return kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.enabled = False
    settings.scanning.disabled = True


@kopf.on.create("polya.dev", "v1alpha1", "polyaruns")
async def create(name: str, namespace: str, body: kopf.Body, **_: Any) -> None:
    job = {**JOB, "metadata": {"name": f"{name}-job", "labels": {"polya.dev/run": name}}}
    kopf.adopt(job, owner=body)
    await kube.client().create("batch/v1", "jobs", namespace, job)


if __name__ == "__main__":
    os.environ.setdefault("KOPF_STANDALONE", "1")
