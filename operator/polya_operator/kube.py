"""The few Kubernetes API calls the operator makes (everything else comes from kopf's watches).

Credentials and TLS come from the official ``kubernetes`` client's loaders (in-cluster service
account, or a kubeconfig); requests go out over one aiohttp session per event loop, so a
burst of creations does not queue behind a thread pool. Configurations are cached per
kubeconfig path: the ``kubernetes`` package reads ``$KUBECONFIG`` at import time and a single
module-global client would leak one test's API server into the next.

Calls and the RBAC they need (namespaced):
  batch/jobs:                    create, delete, patch   (list/watch: kopf)
  ""/pods:                       (list/watch: kopf)
  ""/configmaps:                 create (one immutable spec snapshot per generation)
  ""/persistentvolumeclaims:     create
  ""/services:                   create
  (and, for OwnerReferencesPermissionEnforcement: delete on those children, update on
  polyaruns/finalizers; see the chart's _rbac.tpl)
  ""/events, events.k8s.io/events: create
  polya.dev/polyaruns/status:    patch                   (polyaruns list/watch: kopf)
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from kubernetes import client as kclient
from kubernetes import config as kconfig
from polya_trainer import spec as s

log = logging.getLogger("polya_operator.kube")
USER_AGENT = "polya-operator/0.1"
_CONFIGS: dict[str, kclient.Configuration] = {}
_SESSIONS: dict[tuple[str, int], aiohttp.ClientSession] = {}
_AUTH: dict[int, tuple[float, str | None]] = {}  # id(config) -> (expiry, header)
AUTH_TTL = 60.0  # seconds a token is reused (service-account tokens rotate far slower)


class ApiError(Exception):
    def __init__(self, status: int, body: Any):
        self.status, self.body = status, body
        super().__init__(f"HTTP {status}: {body}")


class OwnedByAnother(Exception):
    """A create answered 409 and the existing object's controller is another owner (a
    deleted run's child that garbage collection has not removed yet)."""


def controller_uid(obj: dict[str, Any]) -> str | None:
    """The uid of the object's controller ownerReference, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref.get("uid")
    return None


def _config_key() -> str:
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        return "<in-cluster>"
    return os.path.expanduser(os.environ.get("KUBECONFIG") or "~/.kube/config")


def configuration() -> kclient.Configuration:
    """The client Configuration for the current $KUBECONFIG (or in-cluster), cached."""
    key = _config_key()
    if key not in _CONFIGS:
        cfg = kclient.Configuration()
        if key == "<in-cluster>":
            kconfig.load_incluster_config(client_configuration=cfg)
        else:
            kconfig.load_kube_config(config_file=key, client_configuration=cfg,
                                     persist_config=False)
        _CONFIGS[key] = cfg
    return _CONFIGS[key]


_SSL: dict[int, ssl.SSLContext | bool] = {}  # id(config) -> context, built once


def _ssl(cfg: kclient.Configuration) -> ssl.SSLContext | bool:
    if id(cfg) in _SSL:
        return _SSL[id(cfg)]
    ctx: ssl.SSLContext | bool = False
    if cfg.host.startswith("https") and cfg.verify_ssl:
        ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
        if cfg.cert_file:
            ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
    _SSL[id(cfg)] = ctx
    return ctx


@dataclass
class Kube:
    """An API client bound to the current configuration and event loop."""

    cfg: kclient.Configuration
    session: aiohttp.ClientSession

    async def request(self, method: str, path: str, body: Any = None,
                      content_type: str = "application/json",
                      params: dict[str, str] | None = None, parse: bool = True) -> Any:
        """One API call; the decoded answer, or ``{}`` when ``parse`` is off (callers that
        only need success skip decoding the echoed object)."""
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        token = _authorization(self.cfg)
        if token:
            headers["Authorization"] = token
        url = self.cfg.host.rstrip("/") + path
        async with self.session.request(method, url, json=body, headers=headers,
                                        params=params, ssl=_ssl(self.cfg)) as resp:
            if resp.status < 400 and not parse:
                await resp.read()  # consumed, so the connection is reused
                return {}
            data = await resp.json(content_type=None) if resp.content_length != 0 else None
            if resp.status >= 400:
                raise ApiError(resp.status, data)
            return data

    # ------------------------------------------------------------------ typed helpers
    async def create(self, api: str, plural: str, namespace: str, body: dict[str, Any],
                     exist_ok: bool = True, parse: bool = False) -> dict[str, Any] | None:
        """POST a namespaced object; an existing one (409) is fine when ``exist_ok`` (then
        None) unless its controller is another owner than ``body``'s: then OwnedByAnother
        (names are reused after a delete and re-create; garbage collection is asynchronous).
        The created object is decoded only with ``parse``."""
        base = f"{_base(api)}/namespaces/{namespace}/{plural}"
        try:
            return await self.request("POST", base, body, parse=parse)
        except ApiError as exc:
            if exc.status != 409 or not exist_ok:
                raise
        mine = controller_uid(body)
        if mine is None:
            return None
        try:
            there = await self.request("GET", f"{base}/{body['metadata']['name']}")
        except ApiError as exc:
            if exc.status == 404:  # gone meanwhile: the next reconcile creates it
                raise OwnedByAnother(body["metadata"]["name"]) from None
            raise
        theirs = controller_uid(there or {})
        if theirs is not None and theirs != mine:
            raise OwnedByAnother(f"{plural}/{body['metadata']['name']} belongs to {theirs}")
        return None

    async def patch(self, api: str, plural: str, namespace: str, name: str,
                    body: dict[str, Any], subresource: str = "",
                    parse: bool = False) -> dict[str, Any] | None:
        """Merge-patch; None when the object is gone (404)."""
        sub = f"/{subresource}" if subresource else ""
        try:
            return await self.request(
                "PATCH", f"{_base(api)}/namespaces/{namespace}/{plural}/{name}{sub}", body,
                content_type="application/merge-patch+json", parse=parse)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def delete(self, api: str, plural: str, namespace: str, name: str) -> None:
        try:
            await self.request("DELETE", f"{_base(api)}/namespaces/{namespace}/{plural}/{name}",
                               {"propagationPolicy": "Background"})
        except ApiError as exc:
            if exc.status != 404:
                raise

    async def patch_run_status(self, namespace: str, name: str,
                               status: dict[str, Any]) -> dict[str, Any] | None:
        return await self.patch(s.API_VERSION, s.PLURAL, namespace, name, {"status": status},
                                subresource="status")

    async def event(self, run: dict[str, Any], reason: str, message: str,
                    type_: str = "Normal") -> None:
        """A core/v1 Event on the PolyaRun (what `kubectl describe` shows)."""
        meta = run.get("metadata") or {}
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name')}.", "namespace":
                         meta.get("namespace")},
            "involvedObject": {"apiVersion": s.API_VERSION, "kind": s.KIND,
                               "name": meta.get("name"), "namespace": meta.get("namespace"),
                               "uid": meta.get("uid")},
            "reason": reason, "message": message[:1024], "type": type_,
            "source": {"component": "polya-operator"}, "reportingComponent": "polya-operator",
            "reportingInstance": os.environ.get("HOSTNAME", "polya-operator"),
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        try:
            await self.request("POST", f"/api/v1/namespaces/{meta.get('namespace')}/events",
                               body)
        except (ApiError, aiohttp.ClientError) as exc:  # events are best effort
            log.warning("could not post event %s: %s", reason, exc)


def _authorization(cfg: kclient.Configuration) -> str | None:
    """The Authorization header, re-read at most every AUTH_TTL seconds (the loader's
    refresh hook re-reads the token file or runs the exec plugin on every call)."""
    now = time.monotonic()
    hit = _AUTH.get(id(cfg))
    if hit is None or hit[0] < now:
        token = cfg.get_api_key_with_prefix("authorization") \
            if hasattr(cfg, "get_api_key_with_prefix") else None
        hit = (now + AUTH_TTL, token)
        _AUTH[id(cfg)] = hit
    return hit[1]


def _base(api: str) -> str:
    return "/api/v1" if api == "v1" else f"/apis/{api}"


def client() -> Kube:
    """The client for the current configuration and running event loop (cached)."""
    cfg = configuration()
    loop = asyncio.get_running_loop()
    key = (_config_key(), id(loop))
    sess = _SESSIONS.get(key)
    if sess is None or sess.closed:
        sess = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64), headers={"User-Agent": USER_AGENT},
            timeout=aiohttp.ClientTimeout(total=60))
        _SESSIONS[key] = sess
    return Kube(cfg, sess)


async def close() -> None:
    """Close the sessions of the running loop (operator shutdown)."""
    loop_id = id(asyncio.get_running_loop())
    for key in [k for k in _SESSIONS if k[1] == loop_id]:
        await _SESSIONS.pop(key).close()


def forget() -> None:
    """Drop cached configurations (tests switch API servers)."""
    _CONFIGS.clear()
    _AUTH.clear()
    _SSL.clear()
