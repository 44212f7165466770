"""The validating admission webhook (POLYA_WEBHOOK=1): kopf serves it over HTTPS with our
self-signed certificate and manages the ValidatingWebhookConfiguration in the emulator; the
test then plays the API server and sends AdmissionReviews to the client config and CA kopf
wrote there.

With the chart's configuration the client config is a ``service:`` reference. The API
server's side is played as kubernetes staging/src/k8s.io/apiserver/pkg/util/webhook/client.go
(``ClientManager.HookClient``) does it: TLS server name ``<name>.<namespace>.svc`` verified
against the caBundle, path ``service.path``, port ``service.port`` (443 when unset) mapped
to the endpoint through the Service (here the chart-rendered Service's targetPort, the
operator container's named port; the "endpoint" is 127.0.0.1). Left out: the API server's
real service resolver (EndpointSlices) and its network path, which the NetworkPolicy test
covers only as rendered rules."""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import socket
import ssl
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import kopf
import pytest
from opkit import free_port, wait_for
from polya_operator import webhook
from polya_operator.handlers import Config, make_registry

CONFIG = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"


def review(spec: dict[str, Any], uid: str = "r-1") -> dict[str, Any]:
    spec = {"model": {"name": "org/model"}, **spec}
    obj = {"apiVersion": "polya.dev/v1alpha1", "kind": "PolyaRun",
           "metadata": {"name": "w", "namespace": "default"}, "spec": spec}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid, "kind": {"group": "polya.dev", "version": "v1alpha1", "kind": "PolyaRun"},
        "resource": {"group": "polya.dev", "version": "v1alpha1", "resource": "polyaruns"},
        "requestKind": {"group": "polya.dev", "version": "v1alpha1", "kind": "PolyaRun"},
        "requestResource": {"group": "polya.dev", "version": "v1alpha1",
                            "resource": "polyaruns"},
        "name": "w", "namespace": "default", "operation": "CREATE",
        "userInfo": {"username": "test"}, "object": obj, "oldObject": None, "dryRun": False,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}}}


def post(url: str, body: dict[str, Any], ctx: ssl.SSLContext) -> dict[str, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
        return json.loads(resp.read())


def test_settings_from_the_chart_environment(tmp_path):
    settings = kopf.OperatorSettings()
    env = {"POLYA_WEBHOOK_PORT": "9555", "POLYA_WEBHOOK_HOST": "polyarun-webhook.ns.svc"}
    webhook.configure(settings, env)
    assert settings.admission.managed == "polyaruns.polya.dev"
    server = settings.admission.server
    assert isinstance(server, kopf.WebhookServer)
    assert (server.port, server.host, server.addr) == (9555, "polyarun-webhook.ns.svc", None)
    # Self-signed for the Service's name, and its own CA (it goes into the caBundle).
    assert server.certfile and server.pkeyfile and server.cafile == server.certfile
    ctx = ssl.create_default_context(cafile=server.cafile)
    ctx.load_cert_chain(server.certfile, server.pkeyfile)  # the key matches the certificate
    # Given files win over the generated ones.
    cert, key = webhook.self_signed("x.example", tmp_path)
    webhook.configure(settings, {**env, "POLYA_WEBHOOK_CERT": str(cert),
                                 "POLYA_WEBHOOK_KEY": str(key)})
    assert (settings.admission.server.certfile, settings.admission.server.pkeyfile) == (
        str(cert), str(key))


def test_validate_handler_registered_only_when_enabled():
    on, _ = make_registry(Config(webhook=True, metrics_port=0))
    off, _ = make_registry(Config(webhook=False, metrics_port=0))
    hooks = on._webhooks.get_all_handlers()
    assert [h.id for h in hooks] == ["validate-spec"]
    assert hooks[0].ignore_failures and set(hooks[0].operations) == {"CREATE", "UPDATE"}
    assert off._webhooks.get_all_handlers() == []


@pytest.mark.timeout(120)
def test_webhook_rejects_invalid_run_naming_the_field(make_cluster, start_operator,
                                                      monkeypatch):
    cluster = make_cluster(chart_values={"webhook": {"enabled": True}})
    monkeypatch.setenv("POLYA_WEBHOOK_HOST", "localhost")
    start_operator(webhook=True, webhook_port=free_port(), webhook_addr="127.0.0.1")

    def configured() -> dict[str, Any] | None:
        code, body = cluster.call("GET", f"{CONFIG}/polyaruns.polya.dev")
        return body if code == 200 and body.get("webhooks") else None

    vwc = wait_for(configured, 60, "kopf to write the ValidatingWebhookConfiguration")
    [hook] = vwc["webhooks"]
    assert hook["name"] == "validate-spec.polyaruns.polya.dev"
    assert hook["failurePolicy"] == "Ignore" and hook["sideEffects"] == "None"
    assert hook["rules"][0]["resources"] == ["polyaruns"]
    assert sorted(hook["rules"][0]["operations"]) == ["CREATE", "UPDATE"]
    url = hook["clientConfig"]["url"]
    assert url.startswith("https://localhost:")
    # The API server's side: trust only the caBundle kopf published.
    ctx = ssl.create_default_context(
        cadata=base64.b64decode(hook["clientConfig"]["caBundle"]).decode())

    bad = post(url, review({"arms": ["vanilla"], "stages": {"rl": {"numGenerations": 0}}}),
               ctx)["response"]
    assert bad["uid"] == "r-1" and bad["allowed"] is False
    assert "spec.stages.rl.numGenerations" in bad["status"]["message"]
    assert bad["status"]["code"] == 422
    good = post(url, review({"arms": ["vanilla"]}, uid="r-2"), ctx)["response"]
    assert good == {"uid": "r-2", "allowed": True} or good["allowed"] is True
    # Plain HTTP or an unknown CA is refused: the server is HTTPS with its own certificate.
    with pytest.raises(urllib.error.URLError):
        post(url, review({"arms": ["vanilla"]}), ssl.create_default_context())
    # The emulator itself calls the registered webhook on every create (emu.py _webhooks).
    assert cluster.create_run("via-hook", {"arms": ["vanilla"]})
    calls = {(name, verdict): n for name, verdict, n in cluster.counts()["webhooks"]}
    assert calls.get(("validate-spec.polyaruns.polya.dev", "allowed"), 0) >= 1, calls


# --------------------------------------------------------------------------- the chart's way

ROOT = Path(__file__).resolve().parents[2]


def _chart(values: dict[str, Any]) -> list[dict[str, Any]]:
    sys.path.insert(0, str(ROOT / "tools"))
    import helm_render

    return helm_render.objects(helm_render.render(values))


class _ServiceConnection(http.client.HTTPSConnection):
    """Dial the resolved endpoint, but verify TLS for ``<name>.<namespace>.svc`` (client.go:
    cfg.Host is the Service's DNS name, cfg.Dial swaps in the endpoint's address)."""

    def __init__(self, endpoint: tuple[str, int], server_name: str, ctx: ssl.SSLContext):
        super().__init__(server_name, endpoint[1], context=ctx, timeout=10)
        self.endpoint, self.server_name, self.ctx = endpoint, server_name, ctx

    def connect(self) -> None:
        raw = socket.create_connection(self.endpoint, timeout=10)
        self.sock = self.ctx.wrap_socket(raw, server_hostname=self.server_name)


def _call_service(config: dict[str, Any], endpoint: tuple[str, int],
                  body: dict[str, Any]) -> dict[str, Any]:
    svc = config["service"]
    ctx = ssl.create_default_context(cadata=base64.b64decode(config["caBundle"]).decode())
    conn = _ServiceConnection(endpoint, f"{svc['name']}.{svc['namespace']}.svc", ctx)
    try:
        conn.request("POST", svc.get("path") or "/", json.dumps(body),
                     {"Content-Type": "application/json"})
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


@pytest.mark.timeout(120)
def test_the_chart_configures_a_service_webhook_the_api_server_can_call(
        make_cluster, start_operator, monkeypatch):
    port = free_port()
    objs = _chart({"webhook": {"enabled": True, "port": port},
                   "networkPolicy": {"metricsFrom": [{"namespaceSelector": {
                       "matchLabels": {"name": "monitoring"}}}]}})
    (dep,) = [o for o in objs if o["kind"] == "Deployment"]
    container = dep["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    for name, value in env.items():
        if name.startswith("POLYA_WEBHOOK_"):
            monkeypatch.setenv(name, value)
    cluster = make_cluster(chart_values={"webhook": {"enabled": True}})
    start_operator(webhook=True, webhook_port=int(env["POLYA_WEBHOOK_PORT"]),
                   webhook_addr="127.0.0.1")

    def configured() -> dict[str, Any] | None:
        code, body = cluster.call("GET", f"{CONFIG}/polyaruns.polya.dev")
        return body if code == 200 and body.get("webhooks") else None

    [hook] = wait_for(configured, 60, "the ValidatingWebhookConfiguration")["webhooks"]
    config = hook["clientConfig"]
    assert "url" not in config  # the API server cannot resolve in-cluster DNS names
    services = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Service"}
    svc = config["service"]
    assert svc["name"] in services and svc["namespace"] == "polyarun-system"
    assert svc["path"].endswith("/validate-spec")
    # The Service's port -> targetPort -> the container's named port: the "endpoint".
    [sport] = [x for x in services[svc["name"]]["spec"]["ports"] if x["port"] == svc["port"]]
    [cport] = [x for x in container["ports"] if x["name"] == sport["targetPort"]]
    endpoint = ("127.0.0.1", cport["containerPort"])

    bad = _call_service(config, endpoint, review({"stages": {"rl": {"numGenerations": 0}}}))
    assert bad["response"]["allowed"] is False
    assert "spec.stages.rl.numGenerations" in bad["response"]["status"]["message"]
    missing = _call_service(config, endpoint, {**review({}), "request": {
        **review({})["request"], "object": {**review({})["request"]["object"], "spec": {}}}})
    assert missing["response"]["allowed"] is False
    assert "spec.model" in missing["response"]["status"]["message"]
    good = _call_service(config, endpoint, review({"arms": ["vanilla"]}, uid="r-2"))
    assert good["response"]["allowed"] is True
    # A certificate for another name is refused, as the API server would.
    with pytest.raises(ssl.SSLCertVerificationError):
        _call_service({**config, "service": {**svc, "name": "elsewhere"}}, endpoint,
                      review({}))
    # The NetworkPolicy admits the API server (no pod/namespace selector can match it) to
    # the webhook port, while metricsFrom still restricts the metrics port.
    (netpol,) = [o for o in objs if o["kind"] == "NetworkPolicy"]
    rules = netpol["spec"]["ingress"]
    webhook_rules = [r for r in rules if {p["port"] for p in r["ports"]} == {port}]
    assert webhook_rules and all("from" not in r for r in webhook_rules)
    metrics_rules = [r for r in rules if 8080 in {p["port"] for p in r["ports"]}]
    assert metrics_rules and all(r.get("from") for r in metrics_rules)


# --------------------------------------------------------------------------- the emulator's side


class _Deny(http.server.BaseHTTPRequestHandler):
    """A webhook that denies every request with 422 and says which operation it saw."""

    def do_POST(self) -> None:
        review_in = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        req = review_in["request"]
        body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                           "response": {"uid": req["uid"], "allowed": False, "status": {
                               "code": 422, "message": f"no {req['operation']} today"}}})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: Any) -> None:
        pass


def _register(cluster, name: str, url: str, ca: bytes, policy: str) -> None:
    code, body = cluster.call("POST", CONFIG, {"metadata": {"name": name}, "webhooks": [{
        "name": f"{name}.example.com", "failurePolicy": policy, "sideEffects": "None",
        "admissionReviewVersions": ["v1"], "timeoutSeconds": 5,
        "clientConfig": {"url": url, "caBundle": base64.b64encode(ca).decode()},
        "rules": [{"apiGroups": ["polya.dev"], "apiVersions": ["*"], "resources": ["polyaruns"],
                   "operations": ["CREATE", "UPDATE"]}]}]})
    assert code == 201, body


def test_emulator_calls_registered_webhooks_and_honours_their_failure_policy(make_cluster,
                                                                             tmp_path):
    cluster = make_cluster()
    cert, key = webhook.self_signed("localhost", tmp_path)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Deny)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # A webhook nobody serves: failurePolicy Ignore lets the request through.
        _register(cluster, "gone", f"https://localhost:{free_port()}/", cert.read_bytes(),
                  "Ignore")
        assert cluster.create_run("a", {"arms": ["vanilla"]})
        _register(cluster, "deny", f"https://localhost:{server.server_port}/",
                  cert.read_bytes(), "Fail")
        code, body = cluster.call("POST", "/apis/polya.dev/v1alpha1/namespaces/default/"
                                  "polyaruns", {"apiVersion": "polya.dev/v1alpha1",
                                                "kind": "PolyaRun", "metadata": {"name": "b"},
                                                "spec": {"model": {"name": "org/model"}}})
        assert code == 422, body
        assert body["message"] == ('admission webhook "deny.example.com" denied the '
                                   "request: no CREATE today")
        code, body = cluster.call("PATCH", "/apis/polya.dev/v1alpha1/namespaces/default/"
                                  "polyaruns/a", {"metadata": {"labels": {"x": "1"}}},
                                  "application/merge-patch+json")
        assert code == 422 and "no UPDATE today" in body["message"], body
        server.shutdown()
        server.server_close()
        # The denying webhook is gone too: failurePolicy Fail now refuses with 500.
        code, body = cluster.call("PATCH", "/apis/polya.dev/v1alpha1/namespaces/default/"
                                  "polyaruns/a", {"metadata": {"labels": {"x": "2"}}},
                                  "application/merge-patch+json")
        assert code == 500 and 'failed calling webhook "deny.example.com"' in body["message"]
        calls = {(n, v): c for n, v, c in cluster.counts()["webhooks"]}
        assert calls[("gone.example.com", "ignored")] >= 1
    finally:
        server.server_close()
