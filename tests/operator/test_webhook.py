"""The validating admission webhook (POLYA_WEBHOOK=1): kopf serves it over HTTPS with our
self-signed certificate and manages the ValidatingWebhookConfiguration in the emulator; the
test then plays the API server and sends AdmissionReviews to the URL and CA kopf wrote there."""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from typing import Any

import kopf
import pytest
from opkit import free_port, wait_for
from polya_operator import webhook
from polya_operator.handlers import Config, make_registry

CONFIG = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"


def review(spec: dict[str, Any], uid: str = "r-1") -> dict[str, Any]:
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
    cluster = make_cluster()
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
