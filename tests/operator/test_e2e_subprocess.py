"""True end to end without a cluster: the operator (real kopf, over HTTP against the API
emulator) creates the Jobs; the fake Job controller (fakecluster.py) makes their pods, and
each pod's container runs on the node double (tests/node/kubelet.py), which runs the
rendered container as a kubelet and runc do: the volumes (spec ConfigMap, workspace claim,
emptyDirs) bind-mounted in a private mount namespace, the termination log bind-mounted on
``terminationMessagePath`` after them, a read-only root and uid 1000. The model and data
live in the workspace claim, as on a cluster. The operator reads live progress from the
stage's own ``/progress`` endpoint (``http://<podIP>:9400``; the double shares this
machine's network, so the pod IP is 127.0.0.1) and the final state from the termination
message that the double reads back (at most 4096 bytes).

Left out: the double's omissions (no network or pid namespace, no cgroup limits; see its
docstring) and the fake controller's (fakecluster.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from node.kubelet import MAX_TERMINATION_MESSAGE, Node, Pod, unsupported
from node.toyrun import CLAIM, fill_claim, toy_spec
from opkit import condition, wait_for


class NodeKubelet:
    """Runs each Job's pod on the node double; the spec ConfigMap is read from the API."""

    def __init__(self, url: str, tmp: Path):
        self.url, self.tmp = url, tmp
        self.claim = tmp / "pv"
        self.logs: dict[str, str] = {}
        self.messages: dict[str, str] = {}
        self.sizes: dict[str, int] = {}

    async def __call__(self, job: dict[str, Any], _jobs: dict[str, Any]) -> tuple[int, str, str]:
        name = job["metadata"]["name"]
        pod_spec = job["spec"]["template"]["spec"]
        cms = {v["configMap"]["name"] for v in pod_spec["volumes"] if "configMap" in v}
        configmaps = {cm: (await self._configmap(cm))["data"] for cm in cms}
        node = Node.for_this_machine(self.tmp / "node", claims={CLAIM: self.claim},
                                     configmaps=configmaps)
        result = await asyncio.to_thread(node.run, Pod.from_job(job), 900)
        self.logs[name] = result.log[-4000:]
        self.messages[name] = result.message
        if result.termination_file is not None:
            self.sizes[name] = len(result.termination_file.read_bytes())
        return result.exit_code, result.message, result.reason

    async def _configmap(self, name: str, timeout: float = 60) -> dict[str, Any]:
        """Like the kubelet mounting the volume: wait for the ConfigMap to exist (the operator
        creates a run's Job first and its ConfigMap right after)."""
        url = f"{self.url}/api/v1/namespaces/default/configmaps/{name}"
        deadline = asyncio.get_running_loop().time() + timeout
        async with aiohttp.ClientSession() as s:
            while True:
                async with s.get(url) as resp:
                    if resp.status == 200:
                        return await resp.json()
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"ConfigMap {name} never appeared")
                await asyncio.sleep(0.2)


@pytest.mark.slow
@pytest.mark.timeout(1500)
@pytest.mark.skipif(unsupported() is not None, reason=str(unsupported()))
def test_operator_runs_real_stages_to_success(make_cluster, start_operator, tmp_path,
                                              toy_model_dir):
    holder: dict[str, NodeKubelet] = {}

    async def runner(job: dict[str, Any], jobs: dict[str, Any]) -> tuple[int, str, str]:
        return await holder["k"](job, jobs)

    cluster = make_cluster(runner=runner)
    kubelet = holder["k"] = NodeKubelet(cluster.url, tmp_path)
    fill_claim(kubelet.claim, toy_model_dir)
    start_operator()  # its own progress fetch: GET http://<podIP>:9400/progress
    cluster.create_run("e2e", toy_spec())
    seen_progress: list[float] = []

    def done() -> bool:
        run = cluster.run("e2e") or {}
        for st in (run.get("status") or {}).get("stages") or []:
            if st["state"] == "Running" and st.get("progress", 0) > 0:
                seen_progress.append(st["progress"])
        return condition(run, "Succeeded").get("status") in ("True", "False")

    wait_for(done, 1400, "the run to finish")
    run = cluster.run("e2e")
    assert condition(run, "Succeeded")["status"] == "True", (
        json.dumps(run["status"], indent=1) + "\n" + "\n".join(
            f"--- {k}\n{v}" for k, v in kubelet.logs.items()))
    stages = run["status"]["stages"]
    assert [x["name"] for x in stages] == ["generate", "midtrain", "rl", "evaluate"]
    assert all(x["state"] == "Succeeded" and x["progress"] == 100.0 for x in stages)
    assert all(x["outputs"] for x in stages)  # from the termination message
    assert len(kubelet.messages) == 4
    for name, text in kubelet.messages.items():
        assert kubelet.sizes[name] <= MAX_TERMINATION_MESSAGE
        msg = json.loads(text)
        assert msg["state"] == "Succeeded" and msg["reason"] == "Completed", name
    assert (kubelet.claim / "e2e" / "polya" / "evaluate" / "MANIFEST.json").exists()
