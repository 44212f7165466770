"""kube.py over the official client's asyncio flavour, against a small recording HTTP server:
credentials and User-Agent on the wire, merge patches, and the status codes the operator
handles itself (409 on create: owner check; 404 on patch and delete: fine; others raise).

The server is a double of kube-apiserver's answers, taken from its source: a create of an
existing name is 409 AlreadyExists and a patch or delete of a missing object 404 NotFound
(k8s.io/apiserver pkg/registry/generic/registry/store.go, Create/Update/Delete through
pkg/storage/errors' Interpret*Error), error bodies are a metav1.Status object, and a patch
names its kind by Content-Type, here application/merge-patch+json (pkg/endpoints/handlers/
patch.go, PatchResource). It leaves out authentication and authorization (the token is only
recorded), admission, resourceVersion conflicts, storage, and every other path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from polya_operator import kube

OURS = {"ownerReferences": [{"controller": True, "uid": "u1"}]}


def _job(name: str, meta: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name, **meta}}


@pytest.fixture
async def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    seen: list[dict[str, Any]] = []
    existing = {"ours": _job("ours", OURS),
                "theirs": _job("theirs", {"ownerReferences": [{"controller": True,
                                                               "uid": "u0"}]})}

    async def handle(req: web.Request) -> web.Response:
        body = await req.read()
        seen.append({"method": req.method, "path": req.path, "headers": dict(req.headers),
                     "body": json.loads(body) if body else None})
        name = req.path.rsplit("/", 1)[-1]
        if req.method == "POST" and req.path.endswith("/jobs"):
            posted = json.loads(body)["metadata"]["name"]
            code = 409 if posted in existing or posted == "gone" else 201
            return web.json_response({"kind": "Status", "code": code}, status=code)
        if req.method == "GET" and req.path.endswith("/polyaruns"):
            return web.json_response({"items": [{"metadata": {"name": req.path}}]})
        if req.method == "GET":
            obj = existing.get(name)
            return web.json_response(obj or {"code": 404}, status=200 if obj else 404)
        if "/broken" in req.path:
            return web.json_response({"message": "boom"}, status=500)
        return web.json_response({}, status=404 if "/missing" in req.path else 200)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    cfg = tmp_path / "kubeconfig"
    cfg.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "t", "user": {"token": "secret"}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(cfg))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    kube.forget()
    yield seen
    await kube.close()
    await runner.cleanup()
    kube.forget()


async def test_requests_carry_credentials_and_handle_status_codes(server: Any) -> None:
    api = kube.client()
    await api.create("batch/v1", "jobs", "ns", _job("new", OURS))
    first = server[0]
    assert (first["method"], first["path"]) == ("POST", "/apis/batch/v1/namespaces/ns/jobs")
    assert first["headers"]["Authorization"] == "Bearer secret"
    assert first["headers"]["User-Agent"].startswith("polya-operator/")
    await api.create("batch/v1", "jobs", "ns", _job("ours", OURS))  # 409, same owner: fine
    for name in ("theirs", "gone"):  # 409 and another owner, or gone by the GET
        with pytest.raises(kube.OwnedByAnother):
            await api.create("batch/v1", "jobs", "ns", _job(name, OURS))
    await api.patch_run_status("ns", "r", {"phase": "Running"})
    patch = server[-1]
    assert patch["path"] == "/apis/polya.dev/v1alpha1/namespaces/ns/polyaruns/r/status"
    assert patch["headers"]["Content-Type"] == "application/merge-patch+json"
    assert patch["body"] == {"status": {"phase": "Running"}}
    await api.patch("batch/v1", "jobs", "ns", "missing", {"spec": {"suspend": True}})
    await api.delete("batch/v1", "jobs", "ns", "missing")  # gone already: fine
    assert server[-1]["body"] == {"propagationPolicy": "Background"}
    with pytest.raises(kube.ApiError) as err:
        await api.delete("batch/v1", "jobs", "ns", "broken")
    assert err.value.status == 500
    await api.event({"metadata": {"name": "broken", "namespace": "broken"}}, "R", "m")
    assert server[-1]["path"] == "/api/v1/namespaces/broken/events"  # failed, not raised
    runs = await api.list_runs(["a", None])
    assert [r["metadata"]["name"] for r in runs] == [
        "/apis/polya.dev/v1alpha1/namespaces/a/polyaruns", "/apis/polya.dev/v1alpha1/polyaruns"]
