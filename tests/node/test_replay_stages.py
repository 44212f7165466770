"""The rendered Jobs of a toy PolyaRun, replayed stage by stage on the node double
(tests/node/kubelet.py): volumes and the termination log bind-mounted in a private mount
namespace, read-only root, uid 1000, env and command as the kubelet builds them.

Left out by the double (see its docstring): no network namespace, so the stage's metrics
port (9400) is a port of this machine, and no cgroup limits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from polya_operator import resources as r
from polya_trainer import spec as s

from node.kubelet import MAX_TERMINATION_MESSAGE, Node, Pod, unsupported
from node.toyrun import CLAIM, fill_claim, toy_spec

pytestmark = pytest.mark.skipif(unsupported() is not None,
                              reason=str(unsupported()))


def rendered(name: str, doc: dict[str, Any]) -> tuple[dict[str, Any], s.PolyaRunSpec]:
    meta = {"name": name, "namespace": "default", "uid": "0000-toy"}
    return meta, s.parse_spec(doc)


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_rendered_jobs_of_a_toy_run_exit_0_on_the_node(tmp_path: Path,
                                                      toy_model_dir: Path) -> None:
    claim = tmp_path / "pv"
    fill_claim(claim, toy_model_dir)
    meta, spec = rendered("toy", toy_spec())
    cm = r.configmap(meta, spec)
    node = Node.for_this_machine(tmp_path / "node", claims={CLAIM: claim},
                                 configmaps={cm["metadata"]["name"]: cm["data"]})
    for stage in spec.stages_for("polya"):
        job = r.job(meta, spec, "polya", stage, 0, image="trainer:test")
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        result = node.run(Pod.from_job(job), timeout=900)
        assert result.exit_code == 0, f"{stage}: {result.reason}\n{result.log[-4000:]}"
        raw = result.termination_file.read_bytes()
        assert len(raw) <= MAX_TERMINATION_MESSAGE, f"{stage}: {len(raw)} bytes"
        final = json.loads(result.message)
        assert final["stage"] == stage and final["state"] == "Succeeded", final
    assert (claim / "toy" / "polya" / "evaluate" / "MANIFEST.json").is_file()


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_two_process_training_stage_on_the_node(tmp_path: Path, toy_model_dir: Path) -> None:
    """midtrain with ``resources.processesPerNode: 2`` on CPU: the rendered command is the real
    launcher (``accelerate launch --num_processes 2``); both ranks share the pod's network,
    so a second metrics server would die with "address already in use". Only rank 0
    reports: one progress file, one termination message."""
    claim = tmp_path / "pv"
    fill_claim(claim, toy_model_dir)
    meta, spec = rendered("toy2", toy_spec(resources={"gpus": 0, "processesPerNode": 2}))
    cm = r.configmap(meta, spec)
    node = Node.for_this_machine(tmp_path / "node", claims={CLAIM: claim},
                                 configmaps={cm["metadata"]["name"]: cm["data"]})
    for stage in ("generate", "midtrain"):
        job = r.job(meta, spec, "polya", stage, 0, image="trainer:test")
        command = job["spec"]["template"]["spec"]["containers"][0]["command"]
        if stage == "midtrain":
            assert command[:4] == ["accelerate", "launch", "--num_processes", "2"], command
        pod = Pod.from_job(job)
        result = node.run(pod, timeout=900)
        assert result.exit_code == 0, f"{stage}: {result.reason}\n{result.log[-6000:]}"
        assert "Address already in use" not in result.log
        final = json.loads(result.message)
        assert final["stage"] == stage and final["state"] == "Succeeded", final
        assert len(result.termination_file.read_bytes()) <= MAX_TERMINATION_MESSAGE
    assert (claim / "toy2" / "polya" / "midtrain" / "MANIFEST.json").is_file()
