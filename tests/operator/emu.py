"""A Kubernetes API emulator for operator tests: kmock 0.8 with its gaps filled.

kmock serves HTTP, parses Kubernetes URLs and answers discovery; this subclass stores the
objects itself and behaves like a (small) kube-apiserver for everything kopf and the
operator use: server-set uid/resourceVersion/creationTimestamp/generation, generateName,
merge and JSON patches, the status subresource kept apart from the main resource, PUT,
deletion with finalizers, ownerReference garbage collection (cascading, asynchronous: see
``gc_delay``), label and field
selectors on list/watch/deletecollection, and watches that honour ``resourceVersion``
(replayed from an event log; below a compaction point, ``POST /_emu/compact``, the watch ends
with a 410 Expired ERROR event), with BOOKMARK events for watches that allow them and
``timeoutSeconds`` honoured. DELETE honours ``propagationPolicy`` (Jobs default to Orphan, as
upstream). Requests are counted per verb and resource at ``GET /_emu``.

Fault injection (tests/reliability; all off by default): ``fail(codes, seconds, count)``
answers the operator's requests (User-Agents in ``fault_agents``) with the given HTTP codes
(429 with ``Retry-After``) for a while; ``drop_watches()`` cuts the open watch streams;
``stall_agents`` makes watches of those agents accept the connection but deliver no events.
Every request is also recorded by (agent, verb, group, resource) in ``requests`` (the verbs the
operator really uses, for the RBAC check), and successful creations per object in ``created``.
``authorized`` records, the same way, the permissions the OwnerReferencesPermissionEnforcement
admission plugin checks on top of the request's own verb (enabled on hardened clusters such
as OpenShift; kubernetes plugin/pkg/admission/gc/gc_admission.go,
``gcPermissionsEnforcement.Admit``): setting or changing ownerReferences needs ``delete`` on
the object itself, and each newly blocking reference (``blockOwnerDeletion: true``) needs
``update`` on the owner's ``<resource>/finalizers``. They are recorded, not enforced (the
plugin is off unless a cluster enables it).

RBAC is enforced (emu_rbac.py): every request is authenticated by its bearer token and
authorized against the rendered chart's Roles and ClusterRoles (``policy``; Cluster's
``chart_values`` choose the chart's values). The operator's kubeconfig (``kubeconfig``) carries
the chart's ServiceAccount's token and gets only what the chart grants; a request outside it
is answered 403 with the API server's Status and counted in ``forbidden``. The tests' own
clients (no token, or ``ADMIN_TOKEN``) are ``system:masters``. ``identities`` records which
user each User-Agent was.

PolyaRuns are admitted as apiextensions-apiserver admits custom resources (``_admit``): pruning
or strict field validation, defaults, the CRD's OpenAPI schema and CEL rules (on create, update
and the status subresource), 422 with the server's causes; a PUT needs a resourceVersion and a
resourceVersion in any write is a precondition. Registered validating webhooks are called
(``_webhooks``), and ResourceQuota is enforced on create (``_quota``). It is a test double: no
mutating webhooks and no controllers. Run in a separate process with
``python tests/operator/emu.py --port N``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import copy
import itertools
import json
import re
import ssl
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp.web
import emu_rbac
import jsonpatch
import kmock
from kmock._internal import parsing

sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
import crdcheck  # tests/crdcheck.py: the CRD's schema and CEL, evaluated

Obj = dict[str, Any]
Key = tuple[str | None, str]  # (namespace, name)

RESOURCES: dict[str, tuple[str, bool, set[str]]] = {
    # "group/version/plural": (kind, namespaced, subresources)
    "polya.dev/v1alpha1/polyaruns": ("PolyaRun", True, {"status"}),
    "batch/v1/jobs": ("Job", True, {"status"}),
    "v1/pods": ("Pod", True, {"status", "eviction"}),
    "v1/events": ("Event", True, set()),
    "v1/configmaps": ("ConfigMap", True, set()),
    "v1/secrets": ("Secret", True, set()),
    "v1/services": ("Service", True, set()),
    "v1/persistentvolumeclaims": ("PersistentVolumeClaim", True, {"status"}),
    "v1/namespaces": ("Namespace", False, {"status"}),
    "v1/resourcequotas": ("ResourceQuota", True, {"status"}),
    "events.k8s.io/v1/events": ("Event", True, set()),
    "apiextensions.k8s.io/v1/customresourcedefinitions":
        ("CustomResourceDefinition", False, {"status"}),
    "coordination.k8s.io/v1/leases": ("Lease", True, set()),
    "admissionregistration.k8s.io/v1/validatingwebhookconfigurations":
        ("ValidatingWebhookConfiguration", False, set()),
}
CUSTOM = {"polya.dev/v1alpha1/polyaruns"}  # served from our CRD: admitted by its schema
VERBS = {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
GC_DELAY = 0.2  # seconds between an owner's deletion and its dependents' (see Emu.gc_delay)


def _parse_path(path: str) -> parsing.ParsedPath:
    """kmock's parser, fixed for the cluster-scoped ``/api/v1/namespaces[/name]``."""
    parts = path.strip("/").split("/")
    if len(parts) >= 2 and parts[0] == "apis":
        group, version, rest = parts[1], (parts[2] if len(parts) > 2 else None), parts[3:]
    elif len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    else:
        return parsing.ParsedPath()
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    plural = rest[0] if rest else None
    name = rest[1] if len(rest) > 1 else None
    sub = "/".join(rest[2:]) or None
    return parsing.ParsedPath(group, version, plural, namespace, name, sub)


def install_fixes() -> None:
    parsing.parse_path = _parse_path


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


_SUFFIX = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9,
           "T": 1e12, "m": 1e-3}
_LEGACY_COUNTS = {"pods": "v1/pods", "services": "v1/services", "secrets": "v1/secrets",
                  "configmaps": "v1/configmaps",
                  "persistentvolumeclaims": "v1/persistentvolumeclaims"}


def quantity(text: Any) -> float:
    """A resource.Quantity as a number (the suffixes the tests use)."""
    text = str(text)
    for suffix in sorted(_SUFFIX, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[:-len(suffix)]) * _SUFFIX[suffix]
    return float(text)


def quota_usage(rk: str, obj: Obj) -> dict[str, float]:
    """What creating `obj` adds to each quota name: the object count (``count/<resource>.
    <group>``, and the legacy core names) and, for a pod, its containers' requests and limits
    (kubernetes pkg/quota/v1/evaluator/core/pods.go, ``PodUsageFunc``; ``cpu`` and ``memory``
    alone mean requests). Left out: init containers, pod overhead, scopes and priority
    classes, and the object counts of a few core kinds."""
    group_version, _, plural = rk.rpartition("/")
    group = group_version.rpartition("/")[0] if "/" in group_version else ""
    use = {f"count/{plural}.{group}" if group else f"count/{plural}": 1.0}
    if _LEGACY_COUNTS.get(plural) == rk:
        use[plural] = 1.0
    if rk == "v1/pods":
        for c in (obj.get("spec") or {}).get("containers") or []:
            res = c.get("resources") or {}
            # requests default to limits (pkg/apis/core/v1/defaults.go, SetDefaults_Pod)
            res = {"limits": res.get("limits") or {},
                   "requests": {**(res.get("limits") or {}), **(res.get("requests") or {})}}
            for kind in ("requests", "limits"):
                for name, value in res[kind].items():
                    use[f"{kind}.{name}"] = use.get(f"{kind}.{name}", 0.0) + quantity(value)
                    if kind == "requests" and name in ("cpu", "memory"):
                        use[name] = use.get(name, 0.0) + quantity(value)
    return use


WEBHOOKS = "admissionregistration.k8s.io/v1/validatingwebhookconfigurations"


def _rule_matches(rule: Obj, group: str, version: str, plural: str, operation: str) -> bool:
    def has(values: Any, value: str) -> bool:
        return "*" in (values or []) or value in (values or [])
    return has(rule.get("apiGroups"), group) and has(rule.get("apiVersions"), version) and \
        has(rule.get("resources"), plural) and has(rule.get("operations"), operation)


async def _call_webhook(hook: Obj, review: Obj) -> Obj:
    """POST the review to the hook's ``url`` (https only, as the API server requires),
    trusting only ``caBundle``, within ``timeoutSeconds`` (default 10)."""
    config = hook["clientConfig"]
    url = config.get("url") or ""
    if not url.startswith("https://"):
        raise ValueError(f"no https url in clientConfig: {sorted(config)}")
    ctx = ssl.create_default_context(
        cadata=base64.b64decode(config["caBundle"]).decode() if config.get("caBundle")
        else None)
    timeout = aiohttp.ClientTimeout(total=float(hook.get("timeoutSeconds") or 10))
    async with aiohttp.ClientSession(timeout=timeout) as session, \
            session.post(url, json=review, ssl=ctx) as resp:
        return await resp.json(content_type=None)


def _propagation(rk: str, params: Any, options: Any) -> str:
    """A DELETE's propagation policy: DeleteOptions in the body or the query, else the
    resource's default: Orphan for batch/v1 Jobs (kubernetes pkg/registry/batch/job/
    strategy.go, ``DefaultGarbageCollectionPolicy``, kept for backward compatibility),
    Background for the rest."""
    options = options if isinstance(options, dict) else {}
    policy = options.get("propagationPolicy") or params.get("propagationPolicy")
    if policy:
        return str(policy)
    if options.get("orphanDependents") is not None:
        return "Orphan" if options["orphanDependents"] else "Background"
    return "Orphan" if rk == "batch/v1/jobs" else "Background"


def _selector_ok(labels: dict[str, str], selector: str | None) -> bool:
    if not selector:
        return True
    for term in re.split(r",(?![^()]*\))", selector):
        term = term.strip()
        if not term:
            continue
        if m := re.fullmatch(r"([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)", term):
            values = {v.strip() for v in m.group(3).split(",")}
            present = labels.get(m.group(1)) in values
            if present != (m.group(2) == "in"):
                return False
        elif "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _fields_ok(obj: Obj, selector: str | None) -> bool:
    if not selector:
        return True
    meta = obj.get("metadata", {})
    for term in selector.split(","):
        k, _, v = term.replace("==", "=").partition("=")
        neg = k.endswith("!")
        k = k.rstrip("!")
        if k.startswith("involvedObject.") or k in ("reason", "type"):  # core events
            value = obj.get("involvedObject", {}).get(k.split(".", 1)[1]) if "." in k \
                else obj.get(k)
        else:
            value = {"metadata.name": meta.get("name"),
                     "metadata.namespace": meta.get("namespace")}.get(k)
        if (value == v) == neg:
            return False
    return True


class Emu(kmock.KubernetesEmulator):
    """kmock's emulator with an apiserver-like object store (see the module docstring)."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.store: dict[str, dict[Key, Obj]] = collections.defaultdict(dict)
        self.log: dict[str, collections.deque[tuple[int, Obj]]] = collections.defaultdict(
            lambda: collections.deque(maxlen=200_000))
        self.watchers: dict[str, list[tuple[str | None, str | None, str | None,
                                             asyncio.Queue[Obj]]]] = collections.defaultdict(list)
        self.rv = itertools.count(1)
        self.last_rv = 0
        self.counts: collections.Counter[str] = collections.Counter()
        self.agents: collections.Counter[str] = collections.Counter()  # by User-Agent product
        # Fault injection and request records (see the module docstring).
        self.requests: collections.Counter[tuple[str, str, str, str]] = collections.Counter()
        self.created: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self.authorized: collections.Counter[tuple[str, str, str, str]] = collections.Counter()
        # RBAC (emu_rbac.py): the policy enforced, requests refused, users by agent.
        self.policy = emu_rbac.chart_policy()
        self.forbidden: collections.Counter[tuple[str, str, str, str]] = collections.Counter()
        self.identities: collections.Counter[tuple[str, str]] = collections.Counter()
        # labelSelector of every list/watch by (agent, verb, plural), and the names of the
        # objects each agent was sent by list/watch, by (agent, plural).
        self.selectors: dict[tuple[str, str, str], set[str]] = collections.defaultdict(set)
        self.served: dict[tuple[str, str], set[str]] = collections.defaultdict(set)
        self.fault_agents: tuple[str, ...] = ("kopf", "polya-operator")
        self.fault_codes: tuple[int, ...] = ()
        self.fault_until = 0.0  # loop time
        self.fault_left = 0  # requests (when no time window is given)
        self.faults_served: collections.Counter[int] = collections.Counter()
        self.stall_agents: set[str] = set()
        # Garbage collection runs GC_DELAY seconds after an owner is gone, as the real
        # collector does from its own work queue (kubernetes
        # pkg/controller/garbagecollector/garbagecollector.go: attemptToDeleteItem, fed by
        # graph_builder.go from informer events): with background propagation the owner is
        # gone at once and its dependents linger a while. POST /_emu/gc {"delay": s} sets it.
        self.gc_delay = GC_DELAY
        self._watch_streams: list[tuple[str, Any]] = []  # (agent, raw request)
        # Watches: resourceVersions below ``compacted`` are gone (410 Expired; POST
        # /_emu/compact); BOOKMARK events every ``bookmark_every`` seconds of quiet to the
        # watches that allow them; counts of both by agent.
        self.compacted = 0
        self.bookmark_every = 5.0
        self.expired: collections.Counter[str] = collections.Counter()
        self.webhook_calls: collections.Counter[tuple[str, str]] = collections.Counter()
        self.bookmarks: collections.Counter[str] = collections.Counter()
        for rk, (kind, namespaced, subs) in RESOURCES.items():
            self.resources[rk] = kmock.ResourceInfo(kind=kind, namespaced=namespaced,
                                                     subresources=subs, verbs=VERBS)
        self.put_object("v1/namespaces", {"metadata": {"name": "default"}})

    # ------------------------------------------------------------------ store helpers
    def _next_rv(self) -> str:
        self.last_rv = next(self.rv)
        return str(self.last_rv)

    def _emit(self, rk: str, kind: str, obj: Obj) -> None:
        self.log[rk].append((self.last_rv, {"type": kind, "object": obj}))
        meta = obj.get("metadata", {})
        for ns, lsel, fsel, queue in self.watchers[rk]:
            if (ns is None or meta.get("namespace") == ns) and \
                    _selector_ok(meta.get("labels") or {}, lsel) and _fields_ok(obj, fsel):
                queue.put_nowait({"type": kind, "object": obj})

    def put_object(self, rk: str, obj: Obj, namespace: str | None = None) -> Obj:
        """Create an object (also used to seed state); emits ADDED."""
        kind, namespaced, _ = RESOURCES.get(rk, ("Object", True, set()))
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if namespaced:
            meta["namespace"] = namespace or meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(),
                    resourceVersion=self._next_rv())
        meta.setdefault("generation", 1)
        group_version = rk.rsplit("/", 1)[0]
        obj["apiVersion"], obj["kind"] = group_version, kind
        self.store[rk][(meta.get("namespace"), meta["name"])] = obj
        self._emit(rk, "ADDED", obj)
        return obj

    def _remove(self, rk: str, key: Key) -> Obj:
        obj = self.store[rk].pop(key)
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = self._next_rv()
        self._emit(rk, "DELETED", obj)
        self._collect(obj["metadata"]["uid"])
        return obj

    def _collect(self, uid: str) -> None:
        """Garbage collection of a deleted owner's dependents, ``gc_delay`` seconds later."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or self.gc_delay <= 0:
            self._collect_now(uid)
        else:
            loop.call_later(self.gc_delay, self._collect_now, uid)

    def _collect_now(self, uid: str) -> None:
        """Delete the dependents of a deleted owner (cascading)."""
        for rk, key in self._dependents(uid):
            if key in self.store[rk]:  # a cascade may have removed it meanwhile
                self._delete(rk, key)

    def _delete(self, rk: str, key: Key, policy: str = "Background") -> Obj:
        """Delete with a propagation policy (the garbage collector's three modes, the
        "Garbage Collection" concepts page): Background, the owner goes at once and its
        dependents later; Orphan, the dependents lose their ownerReference to it first;
        Foreground, the owner keeps a ``foregroundDeletion`` finalizer until its dependents
        are gone."""
        obj = self.store[rk][key]
        meta = obj["metadata"]
        if policy == "Orphan":
            self._orphan(meta["uid"])
        elif policy == "Foreground" and "foregroundDeletion" not in (meta.get("finalizers")
                                                                     or []):
            meta["finalizers"] = [*(meta.get("finalizers") or []), "foregroundDeletion"]
            self._collect_now(meta["uid"])
            self._foreground(rk, key, meta["uid"])
        if meta.get("finalizers"):
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = _now()
                meta["resourceVersion"] = self._next_rv()
                self._emit(rk, "MODIFIED", copy.deepcopy(obj))
            return obj
        return self._remove(rk, key)

    def _evict(self, rk: str, key: Key) -> aiohttp.web.Response:
        """The Eviction API (pkg/registry/core/pod/storage/eviction.go, EvictionREST.Create):
        the pod gets condition DisruptionTarget (reason EvictionByEvictionAPI; the
        PodDisruptionConditions feature, GA in 1.31) and is deleted gracefully. Left out:
        PodDisruptionBudgets (none in these tests, so every eviction is allowed)."""
        if key not in self.store[rk]:
            return self._error(404, "NotFound", f'pods "{key[1]}" not found')
        new = copy.deepcopy(self.store[rk][key])
        status = new.setdefault("status", {})
        status["conditions"] = [c for c in status.get("conditions") or []
                                if c.get("type") != "DisruptionTarget"] + [{
            "type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
            "message": "Eviction API: evicting", "lastTransitionTime": _now()}]
        self._update(rk, key, new)
        self._delete(rk, key)
        return aiohttp.web.json_response({"apiVersion": "v1", "kind": "Status", "metadata": {},
                                          "status": "Success", "code": 201}, status=201)

    def _dependents(self, uid: str) -> list[tuple[str, Key]]:
        return [(rk, key) for rk, objs in self.store.items() for key, obj in objs.items()
                if any(ref.get("uid") == uid for ref in
                       obj.get("metadata", {}).get("ownerReferences") or [])]

    def _orphan(self, uid: str) -> None:
        for rk, key in self._dependents(uid):
            new = copy.deepcopy(self.store[rk][key])
            new["metadata"]["ownerReferences"] = [
                r for r in new["metadata"]["ownerReferences"] if r.get("uid") != uid] or None
            self._update(rk, key, {k: v for k, v in new.items() if v is not None})

    def _foreground(self, rk: str, key: Key, uid: str) -> None:
        """Drop the owner's foregroundDeletion finalizer once no dependent is left."""
        if key not in self.store[rk]:
            return
        if self._dependents(uid):
            asyncio.get_running_loop().call_later(0.05, self._foreground, rk, key, uid)
            return
        new = copy.deepcopy(self.store[rk][key])
        new["metadata"]["finalizers"] = [f for f in new["metadata"]["finalizers"]
                                         if f != "foregroundDeletion"]
        self._update(rk, key, new)

    def _update(self, rk: str, key: Key, new: Obj) -> Obj:
        old = self.store[rk][key]
        if new.get("spec") != old.get("spec"):
            new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        for field in ("uid", "creationTimestamp", "name", "namespace"):
            if field in old["metadata"]:
                new["metadata"][field] = old["metadata"][field]
        new["apiVersion"], new["kind"] = old["apiVersion"], old["kind"]
        new["metadata"]["resourceVersion"] = self._next_rv()
        self.store[rk][key] = new
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._remove(rk, key)
        self._emit(rk, "MODIFIED", copy.deepcopy(new))
        return new

    def _owner_checks(self, agent: str, rk: str, new: Obj, old: Obj | None,
                      sub: str | None = None) -> None:
        """Record what OwnerReferencesPermissionEnforcement authorizes (module docstring):
        ``isChangingOwnerReference`` -> delete on the object; ``newBlockingOwnerDeletionRefs``
        -> update on each owner's finalizers (found by kind, as its RESTMapper would)."""
        refs = (new.get("metadata") or {}).get("ownerReferences") or []
        before = ((old or {}).get("metadata") or {}).get("ownerReferences") or []
        if (rk == "v1/pods" and sub == "status") or refs == before:
            return  # pods/status is whitelisted upstream; or nothing changed
        group, _, plural = rk.rpartition("/")
        group = group.rpartition("/")[0] if "/" in group else ""
        self.authorized[(agent, "delete", group, plural)] += 1
        was_blocking = {r.get("uid") for r in before if r.get("blockOwnerDeletion")}
        for ref in refs:
            if not ref.get("blockOwnerDeletion") or ref.get("uid") in was_blocking:
                continue
            ref_group = ref.get("apiVersion", "").rpartition("/")[0]
            for key, (kind, _n, _s) in RESOURCES.items():
                if kind == ref.get("kind") and key.startswith(f"{ref_group}/" if ref_group
                                                              else "v1/"):
                    self.authorized[(agent, "update", ref_group,
                                     key.rsplit("/", 1)[1] + "/finalizers")] += 1

    # ------------------------------------------------------------------ fault injection
    def fail(self, codes: tuple[int, ...] = (500, 429), seconds: float = 0.0,
             count: int = 0) -> None:
        """Answer the operator's requests with ``codes`` (in turn) for ``seconds`` or for
        ``count`` requests. Call from the emulator's event loop."""
        self.fault_codes = tuple(codes)
        self.fault_until = asyncio.get_running_loop().time() + seconds if seconds else 0.0
        self.fault_left = count

    def drop_watches(self, agents: tuple[str, ...] | None = None) -> int:
        """Cut the open watch connections (of ``agents``, default the operator's)."""
        agents = agents or self.fault_agents
        n = 0
        for agent, raw in list(self._watch_streams):
            if agent in agents and raw.transport is not None:
                raw.transport.close()
                n += 1
        return n

    async def _control(self, path: str, body: dict[str, Any]) -> aiohttp.web.Response:
        """POST /_emu/fail {codes, seconds, count}; /_emu/drop {agents}; /_emu/stall {agents};
        /_emu/gc {delay}; /_emu/seed {resource, count, prefix, labels, spec, namespace}
        (objects created in bulk, in the emulator's process: benchmarks)."""
        out: dict[str, Any] = {}
        if path == "/_emu/fail":
            self.fail(tuple(body.get("codes") or (500, 429)), float(body.get("seconds", 0)),
                      int(body.get("count", 0)))
        elif path == "/_emu/drop":
            out["dropped"] = self.drop_watches(tuple(body.get("agents") or ()) or None)
        elif path == "/_emu/stall":
            self.stall_agents = set(body.get("agents") or ())
        elif path == "/_emu/compact":  # {"bookmarks": s}: also the bookmark interval
            self.compacted = self.last_rv
            for log in self.log.values():
                while log and log[0][0] <= self.compacted:
                    log.popleft()
            self.bookmark_every = float(body.get("bookmarks", self.bookmark_every))
        elif path == "/_emu/gc":
            self.gc_delay = float(body.get("delay", GC_DELAY))
        elif path == "/_emu/seed":  # {"resource": "v1/pods", "count": n, "prefix", "labels"}
            rk, prefix = body["resource"], body.get("prefix", "seed-")
            for i in range(int(body.get("count", 0))):
                self.put_object(rk, {"metadata": {"name": f"{prefix}{i}",
                                                  "labels": dict(body.get("labels") or {})},
                                     "spec": body.get("spec") or {}},
                                body.get("namespace"))
            out["seeded"] = int(body.get("count", 0))
        else:
            return self._error(404, "NotFound", path)
        return aiohttp.web.json_response(out)

    def _fault(self, agent: str) -> int | None:
        if not self.fault_codes or agent not in self.fault_agents:
            return None
        if self.fault_until:
            if asyncio.get_running_loop().time() >= self.fault_until:
                self.fault_codes, self.fault_until = (), 0.0
                return None
        elif self.fault_left <= 0:
            self.fault_codes = ()
            return None
        else:
            self.fault_left -= 1
        served = sum(self.faults_served.values())
        code = self.fault_codes[served % len(self.fault_codes)]
        self.faults_served[code] += 1
        return code

    # ------------------------------------------------------------------ HTTP
    async def _handle(self, request: Any) -> aiohttp.web.StreamResponse:
        raw = request._raw_request
        if request.url.path.startswith("/_emu"):
            if raw.method == "POST":
                return await self._control(request.url.path, await raw.json())
            return aiohttp.web.json_response({
                "counts": dict(self.counts), "agents": dict(self.agents),
                "total": sum(self.counts.values()),
                "created": [[*k, n] for k, n in self.created.items()],
                "authorized": [[*k, n] for k, n in self.authorized.items()],
                "selectors": [[*k, sorted(v)] for k, v in self.selectors.items()],
                "served": [[*k, sorted(v)] for k, v in self.served.items()],
                "requests": [[*k, n] for k, n in self.requests.items()],
                "forbidden": [[*k, n] for k, n in self.forbidden.items()],
                "identities": [[*k, n] for k, n in self.identities.items()],
                "faults": {str(k): n for k, n in self.faults_served.items()},
                "expired": dict(self.expired), "bookmarks": dict(self.bookmarks),
                "webhooks": [[*k, n] for k, n in self.webhook_calls.items()]})
        refused = self._authorize(raw)
        if refused is not None:
            return refused
        res = request.resource
        if res is None or not res.plural:
            return await super()._handle(request)
        rk = "/".join(x for x in (res.group, res.version, res.plural) if x)
        if rk not in RESOURCES:
            return self._error(404, "NotFound", f"the server could not find {rk}")
        kind, namespaced, subs = RESOURCES[rk]
        ns, name, sub = request.namespace, request.name, request.subresource
        params = request.params
        method = raw.method.upper()
        verb = {"GET": "get" if name else "list", "POST": "create", "PATCH": "patch",
                "PUT": "update", "DELETE": "delete" if name else "deletecollection"}[method]
        if method == "GET" and params.get("watch") in ("true", "1"):
            verb = "watch"
        self.counts[f"{verb} {res.plural}{'/' + sub if sub else ''}"] += 1
        agent = raw.headers.get("User-Agent", "").split("/")[0] or "unknown"
        self.agents[agent] += 1
        self.requests[(agent, verb, res.group or "", res.plural + (f"/{sub}" if sub else ""))] \
            += 1
        code = self._fault(agent)
        if code is not None:
            resp = self._error(code, "TooManyRequests" if code == 429 else "InternalError",
                               f"injected fault {code}")
            if code == 429:
                resp.headers["Retry-After"] = "1"
            return resp
        if verb in ("list", "watch"):
            self.selectors[(agent, verb, res.plural)].add(params.get("labelSelector") or "")
        if verb == "watch":
            return await self._watch(raw, rk, ns, params, agent)
        if verb == "list":
            items = [o for (ons, _), o in self.store[rk].items()
                     if (ns is None or ons == ns)
                     and _selector_ok(o["metadata"].get("labels") or {},
                                      params.get("labelSelector"))
                     and _fields_ok(o, params.get("fieldSelector"))]
            self.served[(agent, res.plural)].update(o["metadata"]["name"] for o in items)
            return aiohttp.web.json_response({
                "apiVersion": rk.rsplit("/", 1)[0], "kind": f"{kind}List",
                "metadata": {"resourceVersion": str(self.last_rv)}, "items": items})
        key = (ns if namespaced else None, name or "")
        if verb == "create" and sub == "eviction":
            return self._evict(rk, (ns, name or ""))
        if verb == "create":
            body = request.data if isinstance(request.data, dict) else {}
            meta = body.get("metadata") or {}
            k = (ns if namespaced else None, meta.get("name") or "")
            if meta.get("name") and k in self.store[rk]:
                return self._error(409, "AlreadyExists",
                                   f'{res.plural} "{meta["name"]}" already exists')
            if not meta.get("name") and not meta.get("generateName"):
                return self._error(422, "Invalid", "metadata.name: Required value")
            body, refused = self._admit(rk, body, None, params)
            if refused is not None:
                return refused
            refused = await self._webhooks(rk, "CREATE", body, None, ns) or \
                self._quota(rk, ns, body)
            if refused is not None:
                return refused
            made = self.put_object(rk, body, ns)
            self._owner_checks(agent, rk, made, None)
            self.created[(rk, made["metadata"].get("namespace") or "",
                          made["metadata"]["name"])] += 1
            return aiohttp.web.json_response(made, status=201)
        if key not in self.store[rk]:
            return self._error(404, "NotFound", f'{res.plural} "{name}" not found')
        obj = self.store[rk][key]
        if verb == "get":
            return aiohttp.web.json_response(obj)
        if verb == "delete":
            return aiohttp.web.json_response(self._delete(rk, key, _propagation(
                rk, params, request.data)))
        # patch / update
        current = copy.deepcopy(obj)
        ctype = raw.headers.get("Content-Type", "")
        try:
            if verb == "update":
                new = copy.deepcopy(request.data)
                if rk in CUSTOM and not (new.get("metadata") or {}).get("resourceVersion"):
                    # apiextensions-apiserver pkg/registry/customresource/strategy.go:
                    # AllowUnconditionalUpdate is false for custom resources
                    return self._error(422, "Invalid", "metadata.resourceVersion: Invalid "
                                       "value: 0x0: must be specified for an update")
            elif "json-patch" in ctype:
                new = jsonpatch.apply_patch(current, request.data)
            elif "strategic-merge-patch" in ctype and rk in CUSTOM:
                # apiserver pkg/endpoints/handlers/patch.go: custom resources have no
                # strategic merge patch schema
                return self._error(415, "UnsupportedMediaType", "the body of the request was "
                                   "in an unknown format - accepted media types include: "
                                   "application/json-patch+json, application/merge-patch+json"
                                   ", application/apply-patch+yaml")
            else:  # merge-patch; strategic merge patches of built-ins are treated as such
                new = merge_patch(current, request.data)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            return self._error(422, "Invalid", str(exc))
        want = (new.get("metadata") or {}).get("resourceVersion")
        if want and want != obj["metadata"]["resourceVersion"]:
            # a resourceVersion in the body (PUT, or a patch that sets it) is a precondition
            # (apiserver pkg/registry/generic/registry/store.go, Update: conflict on mismatch)
            return self._error(409, "Conflict", f'Operation cannot be fulfilled on {res.plural} '
                               f'"{name}": the object has been modified; please apply your '
                               "changes to the latest version and try again")
        if kind in ("ConfigMap", "Secret") and current.get("immutable") and any(
                new.get(k) != current.get(k) for k in ("data", "binaryData", "immutable")):
            # kubernetes pkg/apis/core/validation/validation.go, ValidateConfigMapUpdate:
            # "field is immutable when `immutable` is set"
            return self._error(422, "Invalid", "data: Forbidden: field is immutable when "
                               "`immutable` is set")
        if "status" in subs:  # the status subresource keeps spec and status apart
            if sub == "status":
                new = dict(current, status=new.get("status"))
                new["metadata"] = current["metadata"]
            else:
                new["status"] = current.get("status")
        new = {k: v for k, v in new.items() if v is not None}
        new, refused = self._admit(rk, new, current, params)
        if refused is None and sub is None:
            refused = await self._webhooks(rk, "UPDATE", new, current, ns)
        if refused is not None:
            return refused
        self._owner_checks(agent, rk, new, current, sub)
        return aiohttp.web.json_response(self._update(rk, key, new))

    def _admit(self, rk: str, obj: Obj, old: Obj | None,
               params: Any) -> tuple[Obj, aiohttp.web.Response | None]:
        """Admission of a custom resource, as apiextensions-apiserver does it on create and
        update (and on the status subresource): unknown fields pruned, or refused with 400
        under ``fieldValidation=Strict`` (what kubectl sends); the schema's defaults applied;
        then the OpenAPI schema and CEL rules (tests/crdcheck.py), refused with 422 Invalid
        and one cause per field (apimachinery pkg/api/errors/errors.go, ``NewInvalid``).
        Updates are ratcheted (crdcheck.api_errors). Webhooks come after (``_webhooks``)."""
        if rk not in CUSTOM:
            return obj, None
        kind = RESOURCES[rk][0]
        group, name = rk.split("/")[0], (obj.get("metadata") or {}).get("name", "")
        kept = crdcheck.pruned(obj)
        if kept != obj and params.get("fieldValidation") == "Strict":
            return obj, self._error(400, "BadRequest", f'{kind} in version "{rk.split("/")[1]}"'
                                    f' cannot be handled as a {kind}: strict decoding error: '
                                    "unknown field")
        errors = crdcheck.api_errors(kept, old, ratchet=True)
        if not errors:
            return crdcheck.defaulted(kept), None
        causes = [{"reason": "FieldValueInvalid", "message": msg, "field": field}
                  for field, msg in errors]
        listed = ", ".join(f"{c['field']}: {c['message']}" for c in causes)
        resp = self._error(422, "Invalid", f'{kind}.{group} "{name}" is invalid: '
                           + (f"[{listed}]" if len(causes) > 1 else listed))
        body = json.loads(resp.body)
        body["details"] = {"name": name, "group": group, "kind": kind, "causes": causes}
        return obj, aiohttp.web.json_response(body, status=422)

    async def _webhooks(self, rk: str, operation: str, obj: Obj, old: Obj | None,
                        ns: str | None) -> aiohttp.web.Response | None:
        """Validating admission webhooks (apiserver pkg/admission/plugin/webhook/validating/
        dispatcher.go, ``Dispatch``; request and response as in
        pkg/admission/plugin/webhook/request/admissionreview.go): every stored
        ValidatingWebhookConfiguration whose rules match gets an AdmissionReview v1 over
        HTTPS, trusting only its caBundle. A denial is refused with the status it returns
        (403 by default) and the message ``admission webhook "NAME" denied the request: ...``;
        a webhook that cannot be called fails the request (500) unless its failurePolicy is
        Ignore. Left out: ``service`` client configs (no Service network here: a ``url`` is
        called), namespace and object selectors, matchConditions, reinvocation."""
        group_version, _, plural = rk.rpartition("/")
        group, _, version = group_version.rpartition("/")
        for cfg in list(self.store[WEBHOOKS].values()):
            for hook in cfg.get("webhooks") or []:
                if not any(_rule_matches(r, group, version, plural, operation)
                           for r in hook.get("rules") or []):
                    continue
                name = hook["name"]
                review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                          "request": {
                              "uid": str(uuid.uuid4()), "operation": operation,
                              "kind": {"group": group, "version": version,
                                       "kind": RESOURCES[rk][0]},
                              "resource": {"group": group, "version": version,
                                           "resource": plural},
                              "name": (obj.get("metadata") or {}).get("name", ""),
                              "namespace": ns, "object": obj, "oldObject": old,
                              "dryRun": False, "userInfo": {"username": "emulator"}}}
                try:
                    answer = await _call_webhook(hook, review)
                except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                    if hook.get("failurePolicy", "Fail") == "Ignore":
                        self.webhook_calls[(name, "ignored")] += 1
                        continue
                    self.webhook_calls[(name, "failed")] += 1
                    return self._error(500, "InternalError", "Internal error occurred: failed "
                                       f'calling webhook "{name}": {exc}')
                resp = answer.get("response") or {}
                self.webhook_calls[(name, "allowed" if resp.get("allowed") else "denied")] \
                    += 1
                if not resp.get("allowed"):
                    status = resp.get("status") or {}
                    code = int(status.get("code") or 403)
                    return self._error(code, status.get("reason") or "Forbidden",
                                       f'admission webhook "{name}" denied the request: '
                                       f'{status.get("message") or ""}')
        return None

    def _quota(self, rk: str, ns: str | None, obj: Obj) -> aiohttp.web.Response | None:
        """The ResourceQuota admission plugin on create (kubernetes
        plugin/pkg/admission/resourcequota/controller.go, ``checkRequest``): refused with 403
        when the namespace's usage plus this object would pass a quota's ``hard`` limit.
        Usage is counted from the store (terminal pods do not count: pods.go
        ``QuotaV1Pod``), not from ``status.used``."""
        quotas = [q for (qns, _), q in self.store["v1/resourcequotas"].items() if qns == ns]
        if not quotas:
            return None
        adds = quota_usage(rk, obj)
        for q in quotas:
            hard = {k: quantity(v) for k, v in ((q.get("spec") or {}).get("hard") or {}).items()
                    if k in adds}
            if not hard:
                continue
            used = dict.fromkeys(hard, 0.0)
            for other_rk, objs in self.store.items():
                for (ons, _), other in objs.items():
                    if ons != ns or (other_rk == "v1/pods" and (other.get("status") or {}).get(
                            "phase") in ("Succeeded", "Failed")):
                        continue
                    for k, v in quota_usage(other_rk, other).items():
                        if k in used:
                            used[k] += v
            over = sorted(k for k in hard if used[k] + adds[k] > hard[k])
            if over:
                req, now, lim = (",".join(f"{k}={v[k]:g}" for k in over)
                                 for v in (adds, used, hard))
                plural, group = rk.rsplit("/", 1)[1], rk.split("/")[0] if rk.count("/") == 2 \
                    else ""
                what = f"{plural}.{group}" if group else plural
                name = (obj.get("metadata") or {}).get("name") or ""
                return self._error(403, "Forbidden", f'{what} "{name}" is forbidden: exceeded '
                                   f"quota: {q['metadata']['name']}, requested: {req}, "
                                   f"used: {now}, limited: {lim}")
        return None

    def _authorize(self, raw: Any) -> aiohttp.web.Response | None:
        """Authentication and RBAC (emu_rbac.py): None if allowed, else the 401/403."""
        user = emu_rbac.authenticate(self.policy, raw.headers.get("Authorization"))
        if user is None:
            return aiohttp.web.json_response(emu_rbac.UNAUTHORIZED, status=401)
        agent = raw.headers.get("User-Agent", "").split("/")[0] or "unknown"
        self.identities[(agent, user.name)] += 1
        attrs = emu_rbac.attributes(user, raw.method, raw.path, raw.query)
        allowed, reason = self.policy.authorize(attrs)
        if allowed:
            return None
        self.forbidden[(agent, attrs.verb, attrs.group, attrs.resource + (
            f"/{attrs.subresource}" if attrs.subresource else ""))] += 1
        return aiohttp.web.json_response(emu_rbac.forbidden(attrs, reason), status=403)

    def _error(self, code: int, reason: str, message: str) -> aiohttp.web.Response:
        return aiohttp.web.json_response({"apiVersion": "v1", "kind": "Status",
                                          "status": "Failure", "code": code,
                                          "reason": reason, "message": message}, status=code)

    async def _watch(self, raw: Any, rk: str, ns: str | None,
                     params: dict[str, str], agent: str = "") -> aiohttp.web.StreamResponse:
        lsel, fsel = params.get("labelSelector"), params.get("fieldSelector")
        since = params.get("resourceVersion")
        queue: asyncio.Queue[Obj] = asyncio.Queue()

        def wanted(obj: Obj) -> bool:
            meta = obj.get("metadata", {})
            return (ns is None or meta.get("namespace") == ns) and \
                _selector_ok(meta.get("labels") or {}, lsel) and _fields_ok(obj, fsel)

        if since and since != "0" and int(since) < self.compacted:
            # etcd compacted past the version asked for: the watch cache answers with one
            # ERROR event, 410 Expired (apiserver storage/cacher/watch_cache.go,
            # getAllEventsSinceLocked: "too old resource version"); clients re-list.
            resp = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
            await resp.prepare(raw)
            self.expired[agent] += 1
            await resp.write(json.dumps({"type": "ERROR", "object": {
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": f"too old resource version: {since} ({self.compacted})",
                "reason": "Expired", "code": 410}}).encode() + b"\n")
            return resp
        if since and since != "0":
            backlog = [ev for rv, ev in self.log[rk] if rv > int(since) and wanted(ev["object"])]
        else:
            backlog = [{"type": "ADDED", "object": o} for o in self.store[rk].values()
                       if wanted(o)]
        entry = (ns, lsel, fsel, queue)
        self.watchers[rk].append(entry)
        stream = (agent, raw)
        self._watch_streams.append(stream)
        served = self.served[(agent, rk.rsplit("/", 1)[1])]
        resp = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        try:
            await resp.prepare(raw)
            for ev in backlog:
                if agent not in self.stall_agents:
                    served.add(ev["object"]["metadata"]["name"])
                    await resp.write(json.dumps(ev).encode() + b"\n")
            loop = asyncio.get_running_loop()
            timeout = float(params.get("timeoutSeconds") or 0)
            end = loop.time() + timeout if timeout else None
            bookmarks = params.get("allowWatchBookmarks") == "true"
            while end is None or loop.time() < end:
                wait = min(x for x in (self.bookmark_every if bookmarks else None,
                                       end - loop.time() if end else None, 3600.0) if x)
                try:
                    ev = await asyncio.wait_for(queue.get(), max(wait, 0.01))
                except TimeoutError:
                    if not bookmarks or agent in self.stall_agents:
                        continue
                    # Nothing queued: every event up to last_rv is sent (the watch cache's
                    # periodic bookmark, cacher.go; the object carries only its version).
                    ev = {"type": "BOOKMARK", "object": {
                        "kind": RESOURCES[rk][0], "apiVersion": rk.rsplit("/", 1)[0],
                        "metadata": {"resourceVersion": str(self.last_rv)}}}
                    self.bookmarks[agent] += 1
                    await resp.write(json.dumps(ev).encode() + b"\n")
                    continue
                if agent in self.stall_agents:
                    continue  # a stalled watch: connected, but silent
                served.add(ev["object"]["metadata"]["name"])
                await resp.write(json.dumps(ev).encode() + b"\n")
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.watchers[rk].remove(entry)
            self._watch_streams.remove(stream)
        return resp


async def serve(port: int, ready: asyncio.Event | None = None,
                stop: asyncio.Event | None = None,
                chart_values: dict[str, Any] | None = None) -> None:
    """Serve on ``port``, enforcing the RBAC of the chart rendered with ``chart_values``."""
    install_fixes()
    async with Emu(strict=False) as emu, kmock.Server(emu, port=port) as srv:
        emu.policy = emu_rbac.chart_policy(chart_values)
        print(f"emulator listening on {srv.url}", flush=True)
        if ready:
            ready.set()
        await (stop or asyncio.Event()).wait()


def kubeconfig(url: str, token: str = emu_rbac.OPERATOR_TOKEN) -> str:
    """A kubeconfig pointing at the emulator (plain HTTP) with the operator's token (the
    chart's ServiceAccount; ``emu_rbac.ADMIN_TOKEN`` for a privileged client)."""
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "emu",
        "clusters": [{"name": "emu", "cluster": {"server": str(url).rstrip("/")}}],
        "users": [{"name": "emu", "user": {"token": token}}],
        "contexts": [{"name": "emu", "context": {"cluster": "emu", "user": "emu",
                                                 "namespace": "default"}}],
    })


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=18080)
    args = ap.parse_args()
    try:
        asyncio.run(serve(args.port))
    except KeyboardInterrupt:
        sys.exit(0)
