"""Authentication and RBAC authorization for the emulator (emu.py), as kube-apiserver does them.

**Who is asking** (bearer tokens, a token table as with ``--token-auth-file``):

* ``OPERATOR_TOKEN`` (the kubeconfig ``emu.kubeconfig`` writes): the chart's ServiceAccount,
  user ``system:serviceaccount:<namespace>:<name>`` in the groups ``system:serviceaccounts``,
  ``system:serviceaccounts:<namespace>`` and ``system:authenticated`` (what the
  ServiceAccount token authenticator gives, pkg/serviceaccount/util.go ``UserInfo``);
* ``ADMIN_TOKEN``, or no ``Authorization`` header at all: the tests' own clients (their HTTP
  helpers, the fake Job controller and kubelet), in ``system:masters``, which kube-apiserver
  allows everything ahead of RBAC (pkg/kubeapiserver/authorizer/config.go,
  ``authorizerfactory.NewPrivilegedGroups``). A real server would take a request without
  credentials for ``system:anonymous``;
* any other token: 401 Unauthorized.

**Authorization** follows plugin/pkg/auth/authorizer/rbac/rbac.go ``RBACAuthorizer.Authorize``:
it visits the rules of every binding that applies to the user (pkg/registry/rbac/validation
/rule.go ``DefaultRuleResolver.VisitRulesFor``: the ClusterRoleBindings, then the RoleBindings
of the request's namespace; ``appliesToUser``: a User by name, a Group by membership, a
ServiceAccount by name and namespace, the binding's own if the subject has none) and allows
the request when one rule matches (``RuleAllows``, with pkg/apis/rbac/v1/evaluation_helpers.go
``VerbMatches``, ``APIGroupMatches``, ``ResourceMatches`` (``resource/subresource``, ``*``,
``*/subresource``), ``ResourceNameMatches`` (no resourceNames: any name; a create or list has
no name, so a rule with resourceNames never allows one) and ``NonResourceURLMatches``
(``*``, exact, or a prefix ending in ``*``)). A binding whose role is missing adds
``RBAC: <role> not found`` to the refusal, as the authorizer's visitor errors do.

The request's attributes are those of staging/src/k8s.io/apiserver/pkg/endpoints/request
/requestinfo.go ``RequestInfoFactory.NewRequestInfo``: ``/api/v1/...`` and
``/apis/<group>/<version>/...`` are resource requests (shorter paths, discovery included, are
non-resource requests whose verb is the lower-cased method); POST create, GET/HEAD get (list
without a name, watch with ``?watch=true``, a name from a ``metadata.name`` field selector),
PUT update, PATCH patch, DELETE delete (deletecollection without a name); the ``watch/`` and
``proxy/`` path prefixes; ``namespaces/<ns>/<resource>/<name>/<subresource>``.
A refusal is answered as staging/src/k8s.io/apiserver/pkg/endpoints/filters/authorization.go
``WithAuthorization`` does through handlers/responsewriters/errors.go ``Forbidden`` (message
from ``forbiddenMessage``, wrapped by apimachinery's errors.go ``NewForbidden``): 403 with a
metav1.Status, reason Forbidden, details {name, group, kind: the resource}, message
``jobs.batch "x" is forbidden: User "u" cannot get resource "jobs" in API group "batch" in
the namespace "default"``.

The policy: the rendered chart's Roles, ClusterRoles and their bindings (tools/helm_render.py,
as ``helm template``), plus the bootstrap discovery roles every cluster has
(plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go: ``system:discovery`` and
``system:public-info-viewer``, bound to ``system:authenticated``).

Left out: ClusterRole aggregation (``aggregationRule``), the escalation checks on writing
roles and bindings (pkg/registry/rbac/escalation_check.go), impersonation (``Impersonate-*``
headers), the Node, Webhook and ABAC authorizers, SubjectAccessReviews, and the
OwnerReferencesPermissionEnforcement admission plugin (its checks are recorded by emu.py,
not enforced: the plugin is off unless a cluster enables it).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Obj = dict[str, Any]
OPERATOR_TOKEN = "emu-operator"
ADMIN_TOKEN = "emu-admin"
PRIVILEGED_GROUP = "system:masters"
AUTHENTICATED = "system:authenticated"


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()


ADMIN = User("emu-admin", (PRIVILEGED_GROUP, AUTHENTICATED))


def service_account(namespace: str, name: str) -> User:
    return User(f"system:serviceaccount:{namespace}:{name}",
                ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED))


@dataclass(frozen=True)
class Attributes:
    """authorizer.AttributesRecord of a request (filters.GetAuthorizerAttributes)."""

    user: User
    verb: str
    path: str
    resource_request: bool = False
    group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""


_METHOD_VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update",
                 "PATCH": "patch", "DELETE": "delete"}
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}  # Go's strconv.ParseBool


def attributes(user: User, method: str, path: str,
               query: Mapping[str, str] | None = None) -> Attributes:
    """``RequestInfoFactory.NewRequestInfo`` (module docstring)."""
    query = query or {}
    parts = [p for p in path.split("/") if p]
    plain = Attributes(user, method.lower(), path)
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return plain
    prefix, parts = parts[0], parts[1:]
    group = ""
    if prefix == "apis":
        if len(parts) < 3:
            return plain
        group, parts = parts[0], parts[1:]
    version, parts = parts[0], parts[1:]
    if parts and parts[0] in ("watch", "proxy") and len(parts) >= 2:
        verb, parts = parts[0], parts[1:]
    else:
        verb = _METHOD_VERBS.get(method.upper(), "")
    namespace = ""
    if parts and parts[0] == "namespaces" and len(parts) > 1:
        namespace = parts[1]
        if len(parts) > 2 and parts[2] not in ("status", "finalize"):
            parts = parts[2:]
    resource = parts[0] if parts else ""
    name = parts[1] if len(parts) > 1 else ""
    sub = parts[2] if len(parts) > 2 and verb != "proxy" else ""
    if not name and verb == "get":
        verb = "watch" if query.get("watch") in _TRUE else "list"
        for term in (query.get("fieldSelector") or "").split(","):
            key, _, value = term.replace("==", "=").partition("=")
            if key.strip() == "metadata.name" and value and "/" not in value:
                name = value.strip()
    if not name and verb == "delete":
        verb = "deletecollection"
    return Attributes(user, verb, path, True, group, version, resource, sub, namespace, name)


# ---------------------------------------------------------------- evaluation_helpers.go

def verb_matches(rule: Obj, verb: str) -> bool:
    return any(v in ("*", verb) for v in rule.get("verbs") or ())


def api_group_matches(rule: Obj, group: str) -> bool:
    return any(g in ("*", group) for g in rule.get("apiGroups") or ())


def resource_matches(rule: Obj, combined: str, subresource: str) -> bool:
    return any(r in ("*", combined) or (subresource and r == f"*/{subresource}")
               for r in rule.get("resources") or ())


def resource_name_matches(rule: Obj, name: str) -> bool:
    names = rule.get("resourceNames") or ()
    return not names or name in names


def non_resource_url_matches(rule: Obj, path: str) -> bool:
    return any(u in ("*", path) or (u.endswith("*") and path.startswith(u.rstrip("*")))
               for u in rule.get("nonResourceURLs") or ())


def rule_allows(a: Attributes, rule: Obj) -> bool:
    """rbac.go ``RuleAllows``."""
    if a.resource_request:
        combined = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
        return (verb_matches(rule, a.verb) and api_group_matches(rule, a.group)
                and resource_matches(rule, combined, a.subresource)
                and resource_name_matches(rule, a.name))
    return verb_matches(rule, a.verb) and non_resource_url_matches(rule, a.path)


# ---------------------------------------------------------------- the policy

def _applies(user: User, subjects: Iterable[Obj], namespace: str) -> bool:
    """rule.go ``appliesTo`` / ``appliesToUser``."""
    for s in subjects:
        kind, name = s.get("kind"), s.get("name")
        if kind == "User" and name == user.name:
            return True
        if kind == "Group" and name in user.groups:
            return True
        if kind == "ServiceAccount":
            ns = s.get("namespace") or namespace
            if ns and user.name == f"system:serviceaccount:{ns}:{name}":
                return True
    return False


BOOTSTRAP: list[Obj] = [  # bootstrappolicy/policy.go, the discovery roles and bindings
    {"kind": "ClusterRole", "metadata": {"name": "system:discovery"},
     "rules": [{"verbs": ["get"], "nonResourceURLs": [
         "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*",
         "/readyz", "/version", "/version/"]}]},
    {"kind": "ClusterRole", "metadata": {"name": "system:public-info-viewer"},
     "rules": [{"verbs": ["get"], "nonResourceURLs": [
         "/healthz", "/livez", "/readyz", "/version", "/version/"]}]},
    *({"kind": "ClusterRoleBinding", "metadata": {"name": role},
       "roleRef": {"kind": "ClusterRole", "name": role},
       "subjects": [{"kind": "Group", "name": AUTHENTICATED}]}
      for role in ("system:discovery", "system:public-info-viewer")),
]


@dataclass
class Policy:
    """Roles and bindings; ``operator`` is the identity the chart binds them to."""

    roles: dict[tuple[str, str, str], list[Obj]] = field(default_factory=dict)
    bindings: list[Obj] = field(default_factory=list)
    operator: User = field(default_factory=lambda: User("system:anonymous"))

    @classmethod
    def of(cls, objs: Iterable[Obj]) -> Policy:
        policy = cls()
        for o in [*BOOTSTRAP, *objs]:
            meta = o.get("metadata") or {}
            if o.get("kind") in ("Role", "ClusterRole"):
                ns = meta.get("namespace", "") if o["kind"] == "Role" else ""
                policy.roles[(o["kind"], ns, meta["name"])] = list(o.get("rules") or [])
            elif o.get("kind") in ("RoleBinding", "ClusterRoleBinding"):
                policy.bindings.append(o)
                for s in o.get("subjects") or []:
                    if s.get("kind") == "ServiceAccount":
                        policy.operator = service_account(s.get("namespace", ""), s["name"])
        return policy

    def _visit(self, user: User, namespace: str) -> Iterable[tuple[list[Obj] | None, str]]:
        """(rules or None if the role is missing, the role's name) of each binding that
        applies: ClusterRoleBindings, then RoleBindings in ``namespace``."""
        for cluster in (True, False):
            for b in self.bindings:
                ns = (b.get("metadata") or {}).get("namespace", "")
                if (b["kind"] == "ClusterRoleBinding") != cluster or (
                        not cluster and (not namespace or ns != namespace)):
                    continue
                if _applies(user, b.get("subjects") or [], ns):
                    ref = b.get("roleRef") or {}
                    key = (ref.get("kind", ""), "" if ref.get("kind") == "ClusterRole" else ns,
                           ref.get("name", ""))
                    yield self.roles.get(key), f'{key[0].lower()}.rbac.authorization.k8s.io ' \
                                               f'"{key[2]}"'

    def authorize(self, a: Attributes) -> tuple[bool, str]:
        """(allowed, reason): the privileged group, then ``RBACAuthorizer.Authorize``."""
        if PRIVILEGED_GROUP in a.user.groups:
            return True, ""
        errors = []
        for rules, role in self._visit(a.user, a.namespace):
            if rules is None:
                errors.append(f"{role} not found")
            elif any(rule_allows(a, rule) for rule in rules):
                return True, ""
        if not errors:
            return False, ""
        return False, "RBAC: " + (errors[0] if len(errors) == 1 else f"[{', '.join(errors)}]")


def forbidden(a: Attributes, reason: str = "") -> Obj:
    """The 403 Status of ``responsewriters.Forbidden`` (module docstring)."""
    who = f'User "{a.user.name}"'
    if not a.resource_request:
        msg = f'{who} cannot {a.verb} path "{a.path}"'
    else:
        res = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
        where = f'in the namespace "{a.namespace}"' if a.namespace else "at the cluster scope"
        msg = f'{who} cannot {a.verb} resource "{res}" in API group "{a.group}" {where}'
    if reason:
        msg = f"{msg}: {reason}"
    qualified = f"{a.resource}.{a.group}" if a.group else a.resource
    if not qualified:
        message = f"forbidden: {msg}"
    else:
        message = f'{qualified} "{a.name}" is forbidden: {msg}' if a.name \
            else f"{qualified} is forbidden: {msg}"
    details = {k: v for k, v in (("name", a.name), ("group", a.group), ("kind", a.resource))
               if v}
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": "Forbidden", "details": details, "code": 403}


UNAUTHORIZED: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                     "message": "Unauthorized", "reason": "Unauthorized", "code": 401}


def authenticate(policy: Policy, authorization: str | None) -> User | None:
    """The user of a request's Authorization header (module docstring); None: 401."""
    if not authorization:
        return ADMIN
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return {OPERATOR_TOKEN: policy.operator, ADMIN_TOKEN: ADMIN}.get(token.strip())


@functools.cache
def _chart_objects(values: str) -> tuple[Obj, ...]:
    tools = str(Path(__file__).resolve().parents[2] / "tools")
    if tools not in sys.path:
        sys.path.insert(0, tools)
    import helm_render

    return tuple(helm_render.objects(helm_render.render(json.loads(values))))


def chart_policy(values: Mapping[str, Any] | None = None) -> Policy:
    """The RBAC of charts/polyarun rendered with ``values`` (cached per values)."""
    return Policy.of(_chart_objects(json.dumps(values or {}, sort_keys=True)))
