"""True end to end without a cluster: the operator creates the Jobs, and the test "kubelet"
(fakecluster.py with a runner; a FAKE, since there is no kubelet here) runs each Job's real
container command as a local subprocess: ``python -m polya_trainer STAGE --spec
/etc/polya/run.yaml --workdir /workspace/<run> --arm ARM`` with the ConfigMap's run.yaml in a
temp file and the workspace in tmp. The operator reads live progress from the stage's own
/progress endpoint and the final JSON from the termination message (the progress file)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from opkit import condition, free_port, wait_for
from polya_trainer.toy import write_demo_data

ROOT = Path(__file__).resolve().parents[2]


def tiny_spec(model: Path, data: dict[str, Path]) -> dict[str, Any]:
    """Every stage shrunk to seconds on CPU (the numbers of the trainer's own local-run test:
    with fewer questions or samples the toy model may get no candidate right, and then
    generate writes no data for midtrain)."""
    return {
        "model": {"name": str(model), "dtype": "float32"},
        "dataset": {"source": str(data["train"]), "limit": 8},
        "heuristics": {"count": 2}, "arms": ["polya"],
        "stages": {
            "generate": {"backend": "hf", "exemplars": 0, "samplesPerHeuristic": 3, "rounds": 1,
                         "maxNewTokens": 32, "temperature": 0.8, "batchSize": 16,
                         "shardSize": 4, "scorer": {"type": "none"}, "resources": {"gpus": 0},
                         "backoffLimit": 0},
            "midtrain": {"maxSteps": 4, "saveSteps": 2, "perDeviceBatchSize": 4,
                         "gradientAccumulationSteps": 1, "learningRate": 5.0e-4,
                         "maxLength": 256, "resources": {"gpus": 0}, "backoffLimit": 0},
            "rl": {"dataset": {"source": str(data["rl"])}, "maxSteps": 2, "saveSteps": 1,
                   "numGenerations": 4, "perDeviceBatchSize": 8, "maxCompletionLength": 24,
                   "learningRate": 1.0e-5, "resources": {"gpus": 0}, "backoffLimit": 0},
            "evaluate": {"benchmarks": [], "custom": [{"name": "toy", "path": str(data["eval"])}],
                         "k": [1, 2], "samples": 2, "maxNewTokens": 24, "backend": "hf",
                         "limit": 6, "resources": {"gpus": 0}, "backoffLimit": 0},
        },
        "storage": {"pvc": "unused"},
    }


class Kubelet:
    """Runs a Job's container command locally (paths of the pod mapped into tmp)."""

    def __init__(self, url: str, tmp: Path):
        self.url, self.tmp = url, tmp
        self.ports: dict[str, int] = {}  # job name -> progress port
        self.logs: dict[str, str] = {}

    async def __call__(self, job: dict[str, Any], _jobs: dict[str, Any]) -> tuple[int, str, str]:
        name = job["metadata"]["name"]
        run = job["metadata"]["labels"]["polya.dev/run"]
        cm = await self._configmap(f"{run}-spec")
        spec_file = self.tmp / f"{run}-run.yaml"
        spec_file.write_text(cm["data"]["run.yaml"])
        container = job["spec"]["template"]["spec"]["containers"][0]
        mount = next(m["mountPath"] for m in container["volumeMounts"]
                     if m["name"] == "workspace")
        progress = self.tmp / "progress" / f"{name}.json"
        progress.parent.mkdir(exist_ok=True)
        port = free_port()
        self.ports[name] = port
        env = dict(os.environ)
        env.update({e["name"]: e["value"] for e in container["env"] if "value" in e})
        env.update(POLYA_PROGRESS_FILE=str(progress), POLYA_METRICS_PORT=str(port),
                   HOME=str(self.tmp), HF_HOME=str(self.tmp / "hf"),
                   PYTHONPATH=f"{ROOT}/trainer:{ROOT}/operator")
        cmd = [sys.executable if c == "python" else c for c in container["command"]]
        cmd = [str(spec_file) if c == "/etc/polya/run.yaml" else
               c.replace(mount, str(self.tmp / "workspace")) for c in cmd]
        proc = await asyncio.create_subprocess_exec(*cmd, env=env,
                                                    stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        self.logs[name] = out.decode(errors="replace")[-4000:]
        message = progress.read_text()[:4096] if progress.exists() else ""
        return proc.returncode or 0, message, "Completed" if proc.returncode == 0 else "Error"

    async def _configmap(self, name: str, timeout: float = 60) -> dict[str, Any]:
        """The spec ConfigMap; like a kubelet mounting the volume, wait for it to exist (the
        operator creates a run's Job first and its ConfigMap right after)."""
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

    async def fetch(self, pod: dict[str, Any]) -> dict[str, Any] | None:
        job = pod["metadata"]["labels"].get("job-name")
        port = self.ports.get(job or "")
        if not port:
            return None
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as s, \
                    s.get(f"http://127.0.0.1:{port}/progress") as resp:
                return await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_operator_runs_real_stages_to_success(make_cluster, start_operator, tmp_path,
                                              toy_model_dir):
    data = write_demo_data(tmp_path / "data", train=8, rl=16, evaluation=6)
    holder: dict[str, Kubelet] = {}

    async def runner(job: dict[str, Any], jobs: dict[str, Any]) -> tuple[int, str, str]:
        return await holder["k"](job, jobs)

    cluster = make_cluster(runner=runner)
    kubelet = holder["k"] = Kubelet(cluster.url, tmp_path)
    start_operator(fetch_progress=kubelet.fetch)
    cluster.create_run("e2e", tiny_spec(toy_model_dir, data))
    seen_progress: list[float] = []

    def done() -> bool:
        run = cluster.run("e2e") or {}
        for st in (run.get("status") or {}).get("stages") or []:
            if st["state"] == "Running" and st.get("progress", 0) > 0:
                seen_progress.append(st["progress"])
        return condition(run, "Succeeded").get("status") in ("True", "False")

    wait_for(done, 800, "the run to finish")
    run = cluster.run("e2e")
    assert condition(run, "Succeeded")["status"] == "True", (
        json.dumps(run["status"], indent=1) + "\n" + "\n".join(
            f"--- {k}\n{v}" for k, v in kubelet.logs.items()))
    stages = run["status"]["stages"]
    assert [x["name"] for x in stages] == ["generate", "midtrain", "rl", "evaluate"]
    assert all(x["state"] == "Succeeded" and x["progress"] == 100.0 for x in stages)
    assert all(x["outputs"] for x in stages)  # from the termination message
    assert (tmp_path / "workspace" / "e2e" / "polya" / "evaluate" / "MANIFEST.json").exists()
