"""The operator scenarios against a REAL cluster (kind, k3d, a GPU cluster).

Needs KUBECONFIG pointing at a cluster where the chart (charts/polyarun) is installed and the
trainer image is pullable (scripts/kind-e2e.sh does all of that on kind). Skipped without
KUBECONFIG; with it, an unusable cluster fails.
Runs in the namespace $POLYA_E2E_NAMESPACE (default "polya-e2e", created if missing).
The happy path needs a model the pods can read: POLYA_E2E_MODEL (a path inside the workspace
volume or a hub id reachable from the cluster; with POLYA_E2E_CLAIM, the existing claim used as
the workspace); with KUBECONFIG set and no model it fails. scripts/kind-e2e.sh sets both.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from scenarios import SCENARIOS, Scenario, play

pytestmark = pytest.mark.e2e

NS = os.environ.get("POLYA_E2E_NAMESPACE", "polya-e2e")
G, V, P = "polya.dev", "v1alpha1", "polyaruns"


def _clients() -> Any:
    if not os.environ.get("KUBECONFIG"):
        pytest.skip("no cluster: KUBECONFIG is not set; the e2e tier needs a real cluster "
                    "(scripts/kind-e2e.sh)")
    from kubernetes import client, config

    try:
        config.load_kube_config(config_file=os.environ["KUBECONFIG"])
        client.VersionApi().get_code(_request_timeout=5)
        client.ApiextensionsV1Api().read_custom_resource_definition(f"{P}.{G}")
    except Exception as exc:  # KUBECONFIG set: an unusable cluster is a failure, not a skip
        pytest.fail(f"KUBECONFIG is set but the cluster is not usable for e2e "
                    f"({type(exc).__name__}: {exc})")
    return client


@pytest.fixture(scope="module")
def k8s() -> Iterator[Any]:
    client = _clients()
    core = client.CoreV1Api()
    try:
        core.create_namespace({"metadata": {"name": NS}})
    except client.exceptions.ApiException as exc:
        if exc.status != 409:
            raise
    yield client


def run_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def create(k8s: Any, name: str, spec: dict[str, Any]) -> None:
    k8s.CustomObjectsApi().create_namespaced_custom_object(G, V, NS, P, {
        "apiVersion": f"{G}/{V}", "kind": "PolyaRun", "metadata": {"name": name}, "spec": spec})


def get(k8s: Any, name: str) -> dict[str, Any]:
    return k8s.CustomObjectsApi().get_namespaced_custom_object(G, V, NS, P, name)


def cond(run: dict[str, Any], kind: str) -> dict[str, Any]:
    for c in (run.get("status") or {}).get("conditions") or []:
        if c["type"] == kind:
            return c
    return {}


def jobs(k8s: Any, name: str) -> list[Any]:
    return k8s.BatchV1Api().list_namespaced_job(NS, label_selector=f"polya.dev/run={name}").items


def wait(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}")


# A model path that does not exist: every stage fails fast in the real trainer image.
BROKEN = {"model": {"name": "/workspace/does-not-exist"}, "arms": ["vanilla"],
          "storage": {"size": "1Gi"},
          "stages": {"rl": {"backoffLimit": 1, "resources": {"gpus": 0}},
                     "evaluate": {"resources": {"gpus": 0}}}}


def _refused(call: Callable[[], Any], k8s: Any) -> str:
    try:
        call()
    except k8s.exceptions.ApiException as exc:
        assert exc.status in (400, 422), exc
        return str(exc.body)
    raise AssertionError("the API server accepted it")


def test_bad_input_is_refused_at_admission(k8s):
    """The CRD's schema and CEL rules, evaluated by the real API server (issue 13)."""
    api = k8s.CustomObjectsApi()
    model = {"name": "org/model"}
    assert "metadata.name" in _refused(lambda: create(k8s, "2024-exp", {"model": model}), k8s)
    assert "spec.model" in _refused(lambda: create(k8s, run_name("nomodel"), {}), k8s)
    body = _refused(lambda: create(k8s, run_name("bench"), {"model": model, "stages": {
        "evaluate": {"benchmarks": ["not-a-benchmark"]}}}), k8s)
    assert "benchmarks" in body
    # Immutable fields, also when added or removed (transition rules on spec).
    name = run_name("immut")
    create(k8s, name, {"model": model, "arms": ["vanilla"], "suspend": True})
    try:
        for change in ({"spec": {"storage": {"size": "1Gi"}}},
                       {"spec": {"dataset": {"source": "x/y"}}}):
            body = _refused(lambda c=change: api.patch_namespaced_custom_object(
                G, V, NS, P, name, c), k8s)
            assert "immutable" in body, body
    finally:
        api.delete_namespaced_custom_object(G, V, NS, P, name)


def test_invalid_spec_is_rejected_or_reported(k8s):
    name = run_name("bad")
    try:
        create(k8s, name, {"model": {"name": "org/model"},
                           "stages": {"evaluate": {"k": [128], "samples": 4}}})
    except k8s.exceptions.ApiException as exc:  # CEL rule or the webhook
        assert exc.status in (400, 422) and "samples" in exc.body
        return
    run = wait(lambda: cond(get(k8s, name), "Failed").get("status") == "True" and
               get(k8s, name), 120, "InvalidSpec")
    assert cond(run, "Failed")["reason"] == "InvalidSpec"
    assert jobs(k8s, name) == []


def test_first_job_is_restricted_and_owned(k8s):
    name = run_name("job")
    create(k8s, name, {**BROKEN, "suspend": False})
    job = wait(lambda: next(iter(jobs(k8s, name)), None), 120, "the first Job")
    assert job.metadata.name == f"{name}-vanilla-rl-0"
    assert job.metadata.owner_references[0].kind == "PolyaRun"
    c = job.spec.template.spec.containers[0]
    assert c.security_context.run_as_non_root and c.security_context.read_only_root_filesystem
    assert job.spec.pod_failure_policy.rules[0].action == "Ignore"


class ClusterApi:
    """tests/scenarios.py's client interface over the official client."""

    def __init__(self, k8s: Any):
        self.k8s = k8s
        self.api = k8s.CustomObjectsApi()

    def create(self, name: str, spec: dict[str, Any]) -> None:
        create(self.k8s, name, spec)

    def run(self, name: str) -> dict[str, Any] | None:
        try:
            return get(self.k8s, name)
        except self.k8s.exceptions.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def patch(self, name: str, patch: dict[str, Any]) -> None:
        self.api.patch_namespaced_custom_object(G, V, NS, P, name, patch)

    def delete(self, name: str) -> None:
        self.api.delete_namespaced_custom_object(G, V, NS, P, name)

    def jobs(self, name: str) -> list[str]:
        return [j.metadata.name for j in jobs(self.k8s, name)]

    def wait(self, pred: Callable[[], Any], timeout: float, what: str) -> Any:
        return wait(pred, timeout, what)


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda sc: sc.name)
def test_shared_scenario(k8s, sc: Scenario):
    """The scenarios the emulator also plays (tests/operator/test_shared_scenarios.py)."""
    model = os.environ.get("POLYA_E2E_MODEL")
    if sc.model == "working" and not model:  # a cluster is there (k8s): fail, not skip
        pytest.fail("KUBECONFIG is set but POLYA_E2E_MODEL is not: set it to a model the "
                    "pods can load (scripts/kind-e2e.sh builds one into POLYA_E2E_CLAIM)")
    claim = os.environ.get("POLYA_E2E_CLAIM")  # the claim holding the model, as workspace
    storage = {"pvc": claim} if sc.model == "working" and claim else None
    play(sc, ClusterApi(k8s), run_name(sc.name), model or "", storage)
