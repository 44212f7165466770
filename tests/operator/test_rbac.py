"""The emulator's RBAC (emu_rbac.py) and the owner check after a 409 (issue 27).

The authorizer's matching (kubernetes plugin/pkg/auth/authorizer/rbac/rbac.go), the request
attributes (requestinfo.go) and the 403 Status, unit-tested; the exact read-back the operator
makes after a create answered 409 (kube.py ``Kube.create``), refused by the chart's rules
before issue 27 and allowed now; the emulator answering 401/403 over HTTP; and a run deleted
and re-created under its name while its workspace claim is retained, with the chart's RBAC
enforced. (A sweep's later variants re-creating the claim: test_sweep_operator.py.)
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import emu_rbac as rb
import pytest
from opkit import JOBS, RUNS, Cluster, condition, wait_for

OP = rb.chart_policy().operator
NS = "/api/v1/namespaces/default"


# --------------------------------------------------------------------------- attributes

@pytest.mark.parametrize(("method", "path", "query", "want"), [
    ("GET", f"{NS}/pods", {}, ("list", "", "pods", "", "default", "")),
    ("GET", f"{NS}/pods", {"watch": "true"}, ("watch", "", "pods", "", "default", "")),
    ("GET", f"{NS}/pods", {"watch": "1", "fieldSelector": "metadata.name=p"},
     ("watch", "", "pods", "", "default", "p")),
    ("GET", "/apis/batch/v1/watch/namespaces/default/jobs", {},
     ("watch", "batch", "jobs", "", "default", "")),
    ("GET", f"{JOBS}/j", {}, ("get", "batch", "jobs", "", "default", "j")),
    ("POST", JOBS, {}, ("create", "batch", "jobs", "", "default", "")),
    ("PUT", f"{JOBS}/j", {}, ("update", "batch", "jobs", "", "default", "j")),
    ("PATCH", f"{RUNS}/r/status", {},
     ("patch", "polya.dev", "polyaruns", "status", "default", "r")),
    ("DELETE", f"{JOBS}/j", {}, ("delete", "batch", "jobs", "", "default", "j")),
    ("DELETE", JOBS, {}, ("deletecollection", "batch", "jobs", "", "default", "")),
    ("GET", "/api/v1/namespaces/default", {},
     ("get", "", "namespaces", "", "default", "default")),
    ("GET", "/api/v1/namespaces", {}, ("list", "", "namespaces", "", "", "")),
])
def test_request_attributes(method: str, path: str, query: dict[str, str],
                            want: tuple[str, ...]) -> None:
    a = rb.attributes(OP, method, path, query)
    assert a.resource_request
    assert (a.verb, a.group, a.resource, a.subresource, a.namespace, a.name) == want


@pytest.mark.parametrize("path", ["/api", "/api/v1", "/apis", "/apis/batch/v1", "/version",
                                  "/metrics"])
def test_discovery_and_other_paths_are_non_resource_requests(path: str) -> None:
    a = rb.attributes(OP, "GET", path)
    assert not a.resource_request and a.verb == "get" and a.path == path


# --------------------------------------------------------------------------- matching

SA = rb.service_account("ops", "bot")
DEV = rb.User("dana", ("devs", rb.AUTHENTICATED))
POLICY = rb.Policy.of([
    {"kind": "ClusterRole", "metadata": {"name": "bot"}, "rules": [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"],
         "resourceNames": ["only"]},
        {"apiGroups": ["batch"], "resources": ["*"], "verbs": ["list"]},
        {"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["patch"]},
        {"apiGroups": ["polya.dev"], "resources": ["polyaruns"], "verbs": ["*"]},
        {"verbs": ["get"], "nonResourceURLs": ["/metrics", "/logs/*"]}]},
    {"kind": "ClusterRoleBinding", "metadata": {"name": "bot"},
     "roleRef": {"kind": "ClusterRole", "name": "bot"},
     "subjects": [{"kind": "ServiceAccount", "name": "bot", "namespace": "ops"}]},
    {"kind": "Role", "metadata": {"name": "dev", "namespace": "team"}, "rules": [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]},
    {"kind": "RoleBinding", "metadata": {"name": "dev", "namespace": "team"},
     "roleRef": {"kind": "Role", "name": "dev"}, "subjects": [{"kind": "Group", "name": "devs"},
                                                              {"kind": "ServiceAccount",
                                                               "name": "local"}]},
])


@pytest.mark.parametrize(("user", "method", "path", "allowed"), [
    (SA, "GET", f"{NS}/configmaps/only", True),  # resourceNames
    (SA, "GET", f"{NS}/configmaps/other", False),
    (SA, "POST", f"{NS}/configmaps", False),  # a create has no name: resourceNames never match
    (SA, "GET", JOBS, True),  # resources "*"
    (SA, "GET", f"{JOBS}/j", False),  # verb
    (SA, "PATCH", f"{NS}/pods/p/status", True),  # "*/status", apiGroups "*"
    (SA, "PATCH", f"{NS}/pods/p", False),
    (SA, "DELETE", f"{RUNS}/r", True),  # verbs "*"
    (SA, "GET", f"{RUNS}/r/status", False),  # "polyaruns" is not "polyaruns/status"
    (SA, "GET", "/apis/polya.dev/v1alpha1/polyaruns", True),  # cluster-wide
    (SA, "GET", "/metrics", True),
    (SA, "GET", "/logs/kubelet.log", True),
    (SA, "GET", "/logsx", False),
    (SA, "POST", "/metrics", False),
    (SA, "GET", "/apis/batch/v1", True),  # bootstrap system:discovery
    (DEV, "GET", "/api/v1/namespaces/team/pods/p", True),  # Role via Group
    (DEV, "GET", f"{NS}/pods/p", False),  # another namespace
    (rb.service_account("team", "local"), "GET", "/api/v1/namespaces/team/pods/p", True),
    (rb.service_account("other", "local"), "GET", "/api/v1/namespaces/team/pods/p", False),
    (SA, "GET", "/api/v1/namespaces/team/pods/p", False),
    (rb.ADMIN, "DELETE", f"{NS}/secrets/s", True),  # system:masters
    (rb.User("system:anonymous"), "GET", "/apis", False),
])
def test_rule_matching(user: rb.User, method: str, path: str, allowed: bool) -> None:
    assert POLICY.authorize(rb.attributes(user, method, path))[0] is allowed


def test_a_binding_to_a_missing_role_is_the_reason() -> None:
    policy = rb.Policy.of([{"kind": "ClusterRoleBinding", "metadata": {"name": "b"},
                            "roleRef": {"kind": "ClusterRole", "name": "ghost"},
                            "subjects": [{"kind": "User", "name": "u"}]}])
    a = rb.attributes(rb.User("u"), "GET", f"{JOBS}/j")
    allowed, reason = policy.authorize(a)
    assert not allowed
    assert reason == 'RBAC: clusterrole.rbac.authorization.k8s.io "ghost" not found'
    assert rb.forbidden(a, reason)["message"].endswith(f'"default": {reason}')


def test_forbidden_status_bodies() -> None:
    who = 'User "system:serviceaccount:polyarun-system:polyarun-operator"'
    assert rb.forbidden(rb.attributes(OP, "GET", f"{JOBS}/x")) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": f'jobs.batch "x" is forbidden: {who} cannot get resource "jobs" in API '
                   'group "batch" in the namespace "default"',
        "reason": "Forbidden", "details": {"name": "x", "group": "batch", "kind": "jobs"},
        "code": 403}
    assert rb.forbidden(rb.attributes(OP, "GET", "/api/v1/secrets"))["message"] == (
        f'secrets is forbidden: {who} cannot list resource "secrets" in API group "" at the '
        "cluster scope")
    body = rb.forbidden(rb.attributes(OP, "PUT", f"{RUNS}/r/status"))
    assert body["message"].startswith(f'polyaruns.polya.dev "r" is forbidden: {who} cannot '
                                      'update resource "polyaruns/status"')
    assert body["details"] == {"name": "r", "group": "polya.dev", "kind": "polyaruns"}
    assert rb.forbidden(rb.attributes(OP, "GET", "/logs"))["message"] == (
        f'forbidden: {who} cannot get path "/logs"')


# --------------------------------------------------------------------------- the read-back

# The chart's rules on the children before issue 27 (charts/polyarun/templates/_rbac.tpl).
BEFORE_27 = rb.Policy.of([
    {"kind": "ClusterRole", "metadata": {"name": "polyarun-operator"}, "rules": [
        {"apiGroups": ["polya.dev"], "resources": ["polyaruns"],
         "verbs": ["get", "list", "watch", "create", "delete"]},
        {"apiGroups": ["batch"], "resources": ["jobs"],
         "verbs": ["list", "watch", "create", "patch", "delete"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "delete"]},
        {"apiGroups": [""], "resources": ["persistentvolumeclaims", "services"],
         "verbs": ["create", "delete"]}]},
    {"kind": "ClusterRoleBinding", "metadata": {"name": "polyarun-operator"},
     "roleRef": {"kind": "ClusterRole", "name": "polyarun-operator"},
     "subjects": [{"kind": "ServiceAccount", "name": "polyarun-operator",
                   "namespace": "polyarun-system"}]},
])


def _created_kinds() -> list[tuple[str, str]]:
    """(API, plural) of everything the operator creates through ``Kube.create``: the
    executor's children, and a sweep's claim and child PolyaRuns (sweep.py)."""
    from polya_operator import executor
    from polya_trainer import spec as s

    return sorted({*executor._PLURALS.values(), (s.API_VERSION, s.PLURAL)})


@pytest.mark.parametrize(("api", "plural"), _created_kinds())
def test_the_read_back_after_a_409_is_allowed(api: str, plural: str) -> None:
    """``Kube.create`` POSTs, and after a 409 GETs the object by name to check its owner.
    The chart grants both; before issue 27 it refused the GET on every child kind."""
    from polya_operator.kube import _path

    now = rb.chart_policy()
    post = rb.attributes(now.operator, "POST", _path(api, plural, "default"))
    get = rb.attributes(now.operator, "GET", _path(api, plural, "default", "x"))
    assert (post.verb, get.verb, get.name) == ("create", "get", "x")
    assert now.authorize(post)[0] and now.authorize(get)[0]
    assert BEFORE_27.authorize(post)[0]
    if plural != "polyaruns":  # granted already for the sweep's own GET of its parent
        assert BEFORE_27.authorize(get) == (False, "")
        group = api.rpartition("/")[0]
        qualified = f"{plural}.{group}" if group else plural
        assert rb.forbidden(get)["message"] == (
            f'{qualified} "x" is forbidden: User "{now.operator.name}" cannot get resource '
            f'"{plural}" in API group "{group}" in the namespace "default"')


# --------------------------------------------------------------------------- over HTTP

def _call(url: str, path: str, token: str | None, method: str = "GET") -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(url + path, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_emulator_authenticates_and_refuses_over_http() -> None:
    cluster = Cluster().start()  # not make_cluster: this test is refused on purpose
    try:
        code, body = _call(cluster.url, f"{NS}/secrets", rb.OPERATOR_TOKEN)
        assert code == 403 and body == rb.forbidden(rb.attributes(OP, "GET", f"{NS}/secrets"))
        code, body = _call(cluster.url, f"{NS}/persistentvolumeclaims/none", rb.OPERATOR_TOKEN)
        assert code == 404, body  # allowed (issue 27), then not found
        assert _call(cluster.url, "/apis", rb.OPERATOR_TOKEN)[0] == 200
        assert _call(cluster.url, f"{NS}/secrets", "stolen")[0] == 401
        assert _call(cluster.url, f"{NS}/secrets", rb.ADMIN_TOKEN)[0] == 200
        assert _call(cluster.url, f"{NS}/secrets", None)[0] == 200  # the tests' own clients
        state = cluster.counts()
        assert state["forbidden"] == [["Python-urllib", "list", "", "secrets", 1]]
        assert ["Python-urllib", OP.name, 3] in state["identities"]
    finally:
        cluster.stop()


# --------------------------------------------------------------------------- scenario

def _succeeded(cluster: Cluster, name: str, uid: str) -> bool:
    run = cluster.run(name) or {}
    return run.get("metadata", {}).get("uid") == uid and \
        condition(run, "Succeeded").get("status") == "True"


def test_recreated_run_reuses_its_retained_claim(make_cluster, start_operator) -> None:
    """Deleted, then re-created at once under the same name: the workspace claim (kept:
    ``storage.whenDeleted: Retain``, the default) answers the new run's create with 409, and
    the old run's ConfigMap, not yet collected, too. Both are read back (``get``, granted),
    the claim is taken as the new run's, the ConfigMap waits for garbage collection, and the
    new run runs to the end under the chart's RBAC."""
    cluster = make_cluster()
    cluster.fake.rerun = True  # drive the new run's Jobs (same names) too
    cluster.call("POST", "/_emu/gc", {"delay": 3.0})
    start_operator()
    old = cluster.create_run("keep", {"arms": ["vanilla"]})["metadata"]["uid"]
    wait_for(lambda: _succeeded(cluster, "keep", old), 60, "the first run to succeed")
    claims = f"{NS}/persistentvolumeclaims"
    (claim,) = cluster.list(claims)
    assert "ownerReferences" not in claim["metadata"]
    assert cluster.call("DELETE", f"{RUNS}/keep")[0] == 200
    new = cluster.create_run("keep", {"arms": ["vanilla"], "seed": 7})["metadata"]["uid"]
    wait_for(lambda: _succeeded(cluster, "keep", new), 60, "the re-created run to succeed")

    assert [c["metadata"]["uid"] for c in cluster.list(claims)] == [claim["metadata"]["uid"]]
    job = cluster.call("GET", f"{JOBS}/keep-vanilla-rl-0")[1]
    assert job["metadata"]["ownerReferences"][0]["uid"] == new
    state = cluster.counts()
    created = {(rk, name): n for rk, _ns, name, n in state["created"]}
    assert created[("v1/persistentvolumeclaims", "keep-workspace")] == 1
    assert created[("v1/configmaps", "keep-spec")] == 2
    reads = {(g, res) for agent, verb, g, res, _n in state["requests"]
             if agent == "polya-operator" and verb == "get"}
    assert {("", "persistentvolumeclaims"), ("", "configmaps")} <= reads
    assert state["forbidden"] == []
