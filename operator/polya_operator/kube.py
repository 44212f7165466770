"""The few API calls the operator makes itself (everything it reads comes from kopf's watches).

Through the official client's asyncio flavour, ``kubernetes.aio`` (same package): its config
loaders (in-cluster, whose hook re-reads the token file when due, or a kubeconfig, read once
as kopf's kubeconfig login does) and its ``ApiClient``: ``param_serialize`` (URL, headers,
bearer token via ``auth_settings``), ``call_api`` (aiohttp; no retries: ``retries`` unset)
and ``response_deserialize`` (type ``"object"``: plain JSON, no models; an error status
raises ``ApiException`` with ``.status``). An ApiClient's session belongs to one event loop:
clients are cached per loop and ``$KUBECONFIG`` (read per call; tests switch API servers).
Not the typed APIs: a model object built from every answer, one method per kind (and their
``_without_preload_content`` variants raise nothing on an error status); kopf's client
(kopf/_cogs/clients/api.py) is private.

RBAC (namespaced): batch/jobs create, delete, patch; configmaps, persistentvolumeclaims,
services, polyaruns create, and get for the owner check after a 409 (``Kube.create``); events
create, and list for the Jobs' FailedCreate (``Kube.failed_creates``); polyaruns list (watch
check), polyaruns/status patch; and, for OwnerReferencesPermissionEnforcement,
polyaruns/finalizers update (chart _rbac.tpl).
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import UTC, datetime
from typing import Any

import aiohttp
from kubernetes.aio import client as kclient
from kubernetes.aio import config as kconfig
from kubernetes.aio.client.exceptions import ApiException as ApiError
from polya_trainer import spec as s

log = logging.getLogger("polya_operator.kube")
_CLIENTS: dict[tuple[str, int], kclient.ApiClient] = {}  # by (configuration, event loop)


class OwnedByAnother(Exception):
    """A create found an object of that name controlled by another owner (a deleted run's
    child that garbage collection has not removed yet)."""


def controller_uid(obj: dict[str, Any]) -> str | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref.get("uid")
    return None


def in_cluster() -> bool:
    """The service account's credentials (else a kubeconfig's): kopf's login decides alike."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and not os.environ.get("KUBECONFIG")


async def _api() -> kclient.ApiClient:
    path = os.path.expanduser(os.environ.get("KUBECONFIG") or "~/.kube/config")
    key = ("<in-cluster>" if in_cluster() else path, id(asyncio.get_running_loop()))
    if key not in _CLIENTS:
        cfg = kclient.Configuration(client_session_kwargs={"trust_env": False})  # as kopf's
        if in_cluster():
            kconfig.load_incluster_config(client_configuration=cfg)
        else:
            await kconfig.load_kube_config(key[0], client_configuration=cfg, persist_config=False)
        _CLIENTS.setdefault(key, kclient.ApiClient(cfg)).user_agent = "polya-operator/0.1"
    return _CLIENTS[key]


def _path(api: str, plural: str, namespace: str, *rest: str) -> str:
    return "/".join([f"/apis/{api}" if "/" in api else "/api/v1", "namespaces", namespace,
                     plural, *rest])


class Kube:
    async def request(self, method: str, path: str, body: Any = None,
                      content_type: str = "application/json", missing_ok: bool = False,
                      query: list[tuple[str, str]] | None = None) -> Any:
        """The JSON answer ('' if empty; None for a 404 if ``missing_ok``), or ApiError."""
        api = await _api()
        args = await api.param_serialize(method, path, body=body, query_params=query,
                                         auth_settings=["BearerToken"],
                                         header_params={"Content-Type": content_type,
                                                        "Accept": "application/json"})
        resp = await api.call_api(*args, _request_timeout=60)
        await resp.read()
        if missing_ok and resp.status == 404:
            return None
        return api.response_deserialize(resp, {"2XX": "object"}).data

    async def create(self, api: str, plural: str, namespace: str, body: dict[str, Any]) -> None:
        """POST; an existing object of ours (409) is fine. One of another owner, or one gone
        meanwhile (the next reconcile creates it), raises OwnedByAnother."""
        name = body["metadata"]["name"]
        try:
            await self.request("POST", _path(api, plural, namespace), body)
        except ApiError as exc:
            if exc.status != 409:
                raise
            there = await self.request("GET", _path(api, plural, namespace, name),
                                       missing_ok=True)
            mine, theirs = controller_uid(body), controller_uid(there or {})
            if there is None or (mine and theirs and mine != theirs):
                raise OwnedByAnother(f"{plural}/{name} is gone or belongs to {theirs}") from None

    async def patch(self, api: str, plural: str, namespace: str, name: str,
                    body: dict[str, Any], subresource: str = "") -> None:
        """Merge-patch (of the subresource if given); an object that is gone is left alone."""
        await self.request("PATCH", _path(api, plural, namespace, name, subresource).rstrip("/"),
                           body, "application/merge-patch+json", missing_ok=True)

    async def delete(self, api: str, plural: str, namespace: str, name: str) -> None:
        await self.request("DELETE", _path(api, plural, namespace, name),
                           {"propagationPolicy": "Background"}, missing_ok=True)

    async def patch_run_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        await self.patch(s.API_VERSION, s.PLURAL, namespace, name, {"status": status},
                         subresource="status")

    async def list_runs(self, namespaces: list[str | None]) -> list[dict[str, Any]]:
        base = f"/apis/{s.API_VERSION}"
        items: list[dict[str, Any]] = []
        for ns in namespaces:
            path = f"{base}/namespaces/{ns}/{s.PLURAL}" if ns else f"{base}/{s.PLURAL}"
            items += (await self.request("GET", path) or {}).get("items") or []
        return items

    async def failed_creates(self, namespaces: list[str | None]) -> dict[str, str]:
        """The newest message of the Job controller's FailedCreate events per Job uid (pods it
        could not create: a ResourceQuota, an admission webhook; kubernetes
        pkg/controller/controller_utils.go, ``RealPodControl.createPods``): one LIST per
        namespace, filtered by the server (core events are selectable by reason and
        involvedObject.kind: pkg/registry/core/event/strategy.go, ``ToSelectableFields``)."""
        query = [("fieldSelector", "reason=FailedCreate,involvedObject.kind=Job")]
        found: list[dict[str, Any]] = []
        for ns in namespaces:
            path = _path("v1", "events", ns) if ns else "/api/v1/events"
            found += (await self.request("GET", path, query=query) or {}).get("items") or []
        newest: dict[str, str] = {}
        for ev in sorted(found, key=lambda e: str(e.get("lastTimestamp") or e.get(
                "eventTime") or "")):
            uid = (ev.get("involvedObject") or {}).get("uid")
            if uid:
                newest[uid] = str(ev.get("message") or "FailedCreate")
        return newest

    async def event(self, run: dict[str, Any], reason: str, message: str,
                    type_: str = "Normal") -> None:
        """A core/v1 Event on the PolyaRun (what `kubectl describe` shows); best effort. Not
        ``kopf.event``: its queue is set only inside kopf's per-object processing
        (kopf/_core/reactor/processing.py: ``posting.event_queue_var``), not on our work queue."""
        ref = {k: (run.get("metadata") or {}).get(k) for k in ("name", "namespace", "uid")}
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {"apiVersion": "v1", "kind": "Event",
                "metadata": {"generateName": f"{ref['name']}.", "namespace": ref["namespace"]},
                "involvedObject": {"apiVersion": s.API_VERSION, "kind": s.KIND, **ref},
                "reason": reason, "message": message[:1024], "type": type_,
                "source": {"component": "polya-operator"}, "reportingComponent": "polya-operator",
                "reportingInstance": os.environ.get("HOSTNAME", "polya-operator"),
                "firstTimestamp": now, "lastTimestamp": now, "count": 1}
        try:
            await self.request("POST", _path("v1", "events", ref["namespace"]), body)
        except (ApiError, aiohttp.ClientError) as exc:
            log.warning("could not post event %s: %s", reason, exc)


def client() -> Kube:
    """The calls above; each uses the ApiClient of the current configuration and loop."""
    return Kube()


async def close() -> None:
    """Close the running loop's ApiClients (operator shutdown)."""
    loop = id(asyncio.get_running_loop())
    for key in [k for k in _CLIENTS if k[1] == loop]:
        await _CLIENTS.pop(key).close()


def forget() -> None:
    """Drop the cached ApiClients (tests switch API servers behind one kubeconfig path)."""
    _CLIENTS.clear()
