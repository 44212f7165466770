"""The few API calls the operator makes itself (everything it reads comes from kopf's watches).

Credentials and TLS come from the official ``kubernetes`` client's loaders (in-cluster service
account or a kubeconfig, cached per kubeconfig path: the package reads ``$KUBECONFIG`` at
import time and tests switch API servers). The calls themselves go over one aiohttp session
per event loop: the official client is synchronous (a thread per call), kopf's own client
is internal to kopf.

RBAC (namespaced): batch/jobs create, delete, patch; configmaps, persistentvolumeclaims,
services create; events create; polyaruns list (watch check), polyaruns/status patch; and,
for OwnerReferencesPermissionEnforcement, polyaruns/finalizers update (chart _rbac.tpl).
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from kubernetes import client as kclient
from kubernetes import config as kconfig
from polya_trainer import spec as s

log = logging.getLogger("polya_operator.kube")
_CONFIGS: dict[str, tuple[kclient.Configuration, ssl.SSLContext | bool]] = {}
_SESSIONS: dict[tuple[str, int], aiohttp.ClientSession] = {}


class ApiError(Exception):
    def __init__(self, status: int, body: Any):
        self.status, self.body = status, body
        super().__init__(f"HTTP {status}: {body}")


class OwnedByAnother(Exception):
    """A create found an object of that name controlled by another owner (a deleted run's
    child that garbage collection has not removed yet)."""


def controller_uid(obj: dict[str, Any]) -> str | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref.get("uid")
    return None


def _config_key() -> str:
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        return "<in-cluster>"
    return os.path.expanduser(os.environ.get("KUBECONFIG") or "~/.kube/config")


def configuration() -> tuple[kclient.Configuration, ssl.SSLContext | bool]:
    key = _config_key()
    if key not in _CONFIGS:
        cfg = kclient.Configuration()
        if key == "<in-cluster>":
            kconfig.load_incluster_config(client_configuration=cfg)
        else:
            kconfig.load_kube_config(config_file=key, client_configuration=cfg,
                                     persist_config=False)
        ctx: ssl.SSLContext | bool = False
        if cfg.host.startswith("https") and cfg.verify_ssl:
            ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
            if cfg.cert_file:
                ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
        _CONFIGS[key] = (cfg, ctx)
    return _CONFIGS[key]


def _base(api: str) -> str:
    return "/api/v1" if api == "v1" else f"/apis/{api}"


@dataclass
class Kube:
    cfg: kclient.Configuration
    ssl: ssl.SSLContext | bool
    session: aiohttp.ClientSession

    async def request(self, method: str, path: str, body: Any = None,
                      content_type: str = "application/json") -> Any:
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        token = self.cfg.get_api_key_with_prefix("authorization")  # refreshes tokens
        if token:
            headers["Authorization"] = token
        async with self.session.request(method, self.cfg.host.rstrip("/") + path, json=body,
                                        headers=headers, ssl=self.ssl) as resp:
            data = await resp.json(content_type=None) if resp.content_length != 0 else None
            if resp.status >= 400:
                raise ApiError(resp.status, data)
            return data

    async def create(self, api: str, plural: str, namespace: str, body: dict[str, Any]) -> None:
        """POST; an existing object of ours (409) is fine, one of another owner is not."""
        base = f"{_base(api)}/namespaces/{namespace}/{plural}"
        try:
            await self.request("POST", base, body)
            return
        except ApiError as exc:
            if exc.status != 409:
                raise
        mine = controller_uid(body)
        try:
            there = await self.request("GET", f"{base}/{body['metadata']['name']}") or {}
        except ApiError as exc:
            if exc.status == 404:  # gone meanwhile: the next reconcile creates it
                raise OwnedByAnother(body["metadata"]["name"]) from None
            raise
        if mine is not None and controller_uid(there) not in (None, mine):
            raise OwnedByAnother(f"{plural}/{body['metadata']['name']} belongs to "
                                 f"{controller_uid(there)}")

    async def patch(self, api: str, plural: str, namespace: str, name: str,
                    body: dict[str, Any], subresource: str = "") -> None:
        """Merge-patch; an object that is gone (404) is left alone."""
        sub = f"/{subresource}" if subresource else ""
        try:
            await self.request("PATCH", f"{_base(api)}/namespaces/{namespace}/{plural}/{name}"
                               f"{sub}", body, content_type="application/merge-patch+json")
        except ApiError as exc:
            if exc.status != 404:
                raise

    async def delete(self, api: str, plural: str, namespace: str, name: str) -> None:
        try:
            await self.request("DELETE", f"{_base(api)}/namespaces/{namespace}/{plural}/{name}",
                               {"propagationPolicy": "Background"})
        except ApiError as exc:
            if exc.status != 404:
                raise

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

    async def event(self, run: dict[str, Any], reason: str, message: str,
                    type_: str = "Normal") -> None:
        """A core/v1 Event on the PolyaRun (what `kubectl describe` shows); best effort."""
        meta = run.get("metadata") or {}
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        ns = meta.get("namespace")
        body = {"apiVersion": "v1", "kind": "Event",
                "metadata": {"generateName": f"{meta.get('name')}.", "namespace": ns},
                "involvedObject": {"apiVersion": s.API_VERSION, "kind": s.KIND,
                                   "name": meta.get("name"), "namespace": ns,
                                   "uid": meta.get("uid")},
                "reason": reason, "message": message[:1024], "type": type_,
                "source": {"component": "polya-operator"},
                "reportingComponent": "polya-operator",
                "reportingInstance": os.environ.get("HOSTNAME", "polya-operator"),
                "firstTimestamp": now, "lastTimestamp": now, "count": 1}
        try:
            await self.request("POST", f"/api/v1/namespaces/{ns}/events", body)
        except (ApiError, aiohttp.ClientError) as exc:
            log.warning("could not post event %s: %s", reason, exc)


def client() -> Kube:
    """The client for the current configuration and running event loop (cached)."""
    cfg, ctx = configuration()
    key = (_config_key(), id(asyncio.get_running_loop()))
    sess = _SESSIONS.get(key)
    if sess is None or sess.closed:
        sess = _SESSIONS[key] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64),
            headers={"User-Agent": "polya-operator/0.1"}, timeout=aiohttp.ClientTimeout(60))
    return Kube(cfg, ctx, sess)


async def close() -> None:
    """Close the sessions of the running loop (operator shutdown)."""
    loop = id(asyncio.get_running_loop())
    for key in [k for k in _SESSIONS if k[1] == loop]:
        await _SESSIONS.pop(key).close()


def forget() -> None:
    """Drop cached configurations (tests switch API servers)."""
    _CONFIGS.clear()
