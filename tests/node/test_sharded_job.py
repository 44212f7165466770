"""A sharded generate stage (``stages.generate.shards: 3``) replayed on the node double: the
rendered Indexed Job's pods, each with its ``batch.kubernetes.io/job-completion-index``
annotation (which the env's fieldRef turns into ``JOB_COMPLETION_INDEX``, as the Job
controller's ``addCompletionIndexEnvVariable`` declares it), share the workspace claim.
Index 0 is SIGKILLed mid-way (a lost node) and its replacement pod runs alone after the
others, as ``backoffLimitPerIndex`` would have it: the dataset is byte-identical to a 1-shard
run's. The Job controller itself (which pods to create when) is played by the test.

Left out by the double (see tests/node/kubelet.py): no network namespace or cgroups."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from polya_operator import resources as r
from polya_trainer import spec as s
from polya_trainer.runtime import shards
from polya_trainer.runtime.hold import HOLD_ENV

from node.kubelet import Node, Pod, unsupported
from node.toyrun import CLAIM, fill_claim, toy_spec

pytestmark = pytest.mark.skipif(unsupported() is not None, reason=str(unsupported()))


def _spec(count: int) -> s.PolyaRunSpec:
    doc = toy_spec()
    doc["stages"]["generate"].update(shardSize=2, shards=count)  # 8 questions: 4 data shards
    return s.parse_spec(doc)


def _pod(job: dict[str, Any], index: int | None) -> Pod:
    if index is None:
        return Pod.from_job(job)
    return Pod.from_job(job, annotations={shards.INDEX_ANNOTATION: str(index)})


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_three_indices_one_killed_give_the_one_shard_dataset(tmp_path: Path,
                                                             toy_model_dir: Path) -> None:
    claim = tmp_path / "pv"
    fill_claim(claim, toy_model_dir)
    runs = {"one": _spec(1), "three": _spec(3)}
    cms = {name: r.configmap({"name": name, "namespace": "default", "uid": name}, sp)
           for name, sp in runs.items()}
    node = Node.for_this_machine(tmp_path / "node", claims={CLAIM: claim},
                                 configmaps={cm["metadata"]["name"]: cm["data"]
                                             for cm in cms.values()})
    jobs = {name: r.job({"name": name, "namespace": "default", "uid": name}, sp, "polya",
                        "generate", 0, image="trainer:test") for name, sp in runs.items()}
    assert jobs["three"]["spec"]["completionMode"] == "Indexed"
    for job in jobs.values():  # both runs share the claim: no restore from the stage cache
        job["spec"]["template"]["spec"]["containers"][0]["env"].append(
            {"name": "POLYA_STAGE_CACHE", "value": "0"})

    def run(name: str, index: int | None) -> None:
        result = node.run(_pod(jobs[name], index), timeout=600)
        assert result.exit_code == 0, f"{name}/{index}: {result.reason}\n{result.log[-4000:]}"

    run("one", None)
    stage = claim / "three" / "polya" / "generate"
    # Index 0 (data shards 0 and 1) is held once its first shard is written (the hold file
    # lies on the claim, where the host sees it), then killed there.
    first_pod = _pod(jobs["three"], 0)
    first_pod.spec["containers"][0]["env"].append(
        {"name": HOLD_ENV, "value": f"1:{runs['three'].storage.mount_path}/held-index-0"})
    running = node.start(first_pod)
    held = claim / "held-index-0"
    first, second = (stage / "shards" / f"shard-0000{i}.json" for i in (0, 1))
    deadline = time.monotonic() + 600
    while not held.exists() and running.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert held.exists(), f"index 0 never held:\n{running.proc.poll()}"
    os.killpg(running.proc.pid, signal.SIGKILL)
    killed = running.wait()
    assert killed.exit_code == 128 + signal.SIGKILL, killed.log[-3000:]
    assert first.exists() and not second.exists(), "the kill did not land mid-way"
    run("three", 2)
    run("three", 1)
    assert not (stage / "MANIFEST.json").exists()  # index 0 is not done: no merge yet
    run("three", 0)  # the replacement pod: redoes only data shard 1, then merges
    index0 = json.loads((stage / "indices" / "0" / "MANIFEST.json").read_text())
    assert index0["resumed"] == 1

    def dataset(run_name: str) -> dict[str, bytes]:
        data = claim / run_name / "polya" / "generate" / "data"
        return {p.name: p.read_bytes() for p in sorted(data.glob("*.parquet"))}

    assert dataset("one") and dataset("three") == dataset("one")
    one_card = json.loads((claim / "one/polya/generate/card.json").read_text())
    card = json.loads((stage / "card.json").read_text())
    assert card["counts"] == one_card["counts"] and card["resumedShards"] == 1
