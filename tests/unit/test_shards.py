"""Sharded inference stages: the slicing is a deterministic partition, the merge is claimed
exactly once per set of finished indices, and the Job builder renders an Indexed Job."""

from __future__ import annotations

import json
import os
from pathlib import Path

import kubernetes_validate
import pytest
from polya_operator import resources as r
from polya_trainer import spec as s
from polya_trainer.runtime import shards

META = {"name": "r1", "namespace": "team", "uid": "1234"}


@pytest.mark.parametrize("total", [0, 1, 2, 7, 16, 100])
@pytest.mark.parametrize("count", [1, 2, 3, 5, 8])
def test_split_is_a_balanced_contiguous_partition(total: int, count: int) -> None:
    parts = [shards.split(total, count, i) for i in range(count)]
    assert [x for p in parts for x in p] == list(range(total))  # in order, each once
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert parts == [shards.split(total, count, i) for i in range(count)]  # deterministic


def test_split_rejects_an_index_outside_the_count() -> None:
    with pytest.raises(ValueError, match="index"):
        shards.split(10, 3, 3)


@pytest.mark.parametrize("sizes", [[40, 3, 0, 17], [5], [0, 0], [16, 16, 16, 1]])
@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_assign_partitions_every_group_in_unit_aligned_ranges(sizes: list[int],
                                                              count: int) -> None:
    unit = 16
    seen: dict[int, list[int]] = {g: [] for g in range(len(sizes))}
    for index in range(count):
        for g, span in shards.assign(sizes, unit, count, index).items():
            assert span.start % unit == 0  # slices start on a batch boundary
            assert len(span) > 0
            seen[g] += list(span)
    # Every item of every group exactly once, and in item order when indices are in order.
    assert seen == {g: list(range(n)) for g, n in enumerate(sizes)}


def test_current_index_reads_the_job_controller_variable() -> None:
    assert shards.current_index(3, {"JOB_COMPLETION_INDEX": "2"}) == 2
    assert shards.current_index(3, {}) is None  # no index: the whole stage in one process
    assert shards.current_index(1, {"JOB_COMPLETION_INDEX": "0"}) is None
    with pytest.raises(ValueError, match="outside"):
        shards.current_index(3, {"JOB_COMPLETION_INDEX": "3"})


def _finish(stage: Path, index: int, count: int, key: str = "k1") -> None:
    f = stage / "data" / f"part-{index}"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(f"rows of {index}")
    shards.write_index_manifest(stage, index, count, key, [f"data/part-{index}"])


def test_merge_is_claimed_once_by_the_last_index_and_again_by_a_retried_merger(
        tmp_path: Path) -> None:
    stage = tmp_path / "generate"
    _finish(stage, 0, 3)
    assert not shards.claim_merge(stage, 0, 3, "k1")  # 1 and 2 unfinished
    _finish(stage, 2, 3)
    assert not shards.claim_merge(stage, 2, 3, "k1")
    _finish(stage, 1, 3)
    # Two indices that see all manifests at once: exactly one wins.
    assert [shards.claim_merge(stage, i, 3, "k1") for i in (1, 2)] == [True, False]
    # The merger dies mid-merge and is retried: a new manifest (nonce), so a new claim.
    _finish(stage, 1, 3)
    assert shards.claim_merge(stage, 1, 3, "k1")
    assert not shards.claim_merge(stage, 0, 3, "k1")
    # Manifests of other settings, another count or with a cut file do not count.
    assert not shards.claim_merge(stage, 1, 3, "other-key")
    assert not shards.claim_merge(stage, 1, 4, "k1")
    (stage / "data" / "part-0").write_text("cut")
    assert shards.read_index_manifest(stage, 0, 3, "k1") is None
    assert not shards.claim_merge(stage, 1, 3, "k1")
    with pytest.raises(RuntimeError, match=r"\[0\]"):
        shards.merged_meta(stage, 3, "k1")


def _spec(**stages: dict) -> s.PolyaRunSpec:
    return s.parse_spec({"model": {"name": "org/model"}, "stages": stages})


@pytest.mark.parametrize("stage", ["generate", "evaluate"])
def test_a_sharded_stage_is_an_indexed_job_retried_per_index(stage: str) -> None:
    sp = _spec(**{stage: {"shards": 4, "backoffLimit": 3}})
    job = r.job(META, sp, "polya", stage, 0, image="img:1")
    kubernetes_validate.validate(job, "1.32.0", strict=True)
    js = job["spec"]
    assert (js["completionMode"], js["completions"], js["parallelism"]) == ("Indexed", 4, 4)
    assert js["backoffLimitPerIndex"] == 3 and js["maxFailedIndexes"] == 2
    assert "backoffLimit" not in js  # it would fail the Job on the first pod failure
    rules = js["podFailurePolicy"]["rules"]
    assert rules[0]["action"] == "Ignore" and rules[1]["action"] == "FailJob"
    env = {e["name"]: e for e in js["template"]["spec"]["containers"][0]["env"]}
    assert env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        f"metadata.annotations['{shards.INDEX_ANNOTATION}']"
    # One shard: the plain Job of one pod, retried by the planner.
    plain = r.job(META, _spec(), "polya", stage, 0, image="img:1")["spec"]
    assert plain["backoffLimit"] == 0 and "completionMode" not in plain


def test_shards_must_be_positive() -> None:
    with pytest.raises(ValueError, match="shards"):
        _spec(generate={"shards": 0})


def test_progress_of_the_indices_adds_up() -> None:
    a = {"stage": "generate", "state": "Running", "done": 10, "total": 40, "progress": 25.0,
         "etaSeconds": 30.0, "metrics": {"accepted": 7, "acceptance_rate": 0.5}}
    b = {"stage": "generate", "state": "Succeeded", "done": 20, "total": 20,
         "progress": 100.0, "etaSeconds": 0.0, "metrics": {"accepted": 12,
                                                          "acceptance_rate": 0.8}}
    both = shards.combine_progress([a, b])
    assert both is not None
    assert (both["done"], both["total"], both["progress"]) == (30, 60, 50.0)
    assert both["etaSeconds"] == 30.0 and both["state"] == "Running"
    assert both["metrics"]["accepted"] == 19
    assert both["metrics"]["acceptance_rate"] == pytest.approx((10 * 0.5 + 20 * 0.8) / 30)
    # An index that has not reported yet counts as no work done.
    part = shards.combine_progress([b, None])
    assert part is not None and part["progress"] == 50.0 and part["state"] == "Running"
    assert part["shards"] == {"count": 2, "reporting": 1}
    assert shards.combine_progress([None, None]) is None


CHILD = """
import json
import os
import sys
from pathlib import Path
i = int(os.environ["JOB_COMPLETION_INDEX"])
marker = Path(sys.argv[1]) / f"failed-{i}"
snap = {"stage": "generate", "state": "Succeeded", "done": i + 1, "total": i + 1,
        "progress": 100.0, "metrics": {"accepted": 1}}
if i == 1 and not marker.exists():  # index 1 fails once, half-way
    marker.write_text("")
    snap.update(state="Failed", done=1)
    Path(os.environ["POLYA_PROGRESS_FILE"]).write_text(json.dumps(snap))
    sys.exit(1)
Path(os.environ["POLYA_PROGRESS_FILE"]).write_text(json.dumps(snap))
print("index", i, "threads", os.environ["OMP_NUM_THREADS"])
"""


def test_local_fan_out_retries_a_failed_index_alone(tmp_path: Path) -> None:
    import sys
    import time

    from polya_trainer.engine.fanout import IndexedProcesses

    log_path = tmp_path / "log"
    with open(log_path, "wb") as log:
        procs = IndexedProcesses([sys.executable, "-c", CHILD, str(tmp_path)],
                                 dict(os.environ), 3, tmp_path / "progress.json", log,
                                 limit=2, retries=1)
        assert len(procs.running) == 2  # the concurrency limit
        while (rc := procs.poll()) is None:
            time.sleep(0.05)
    assert rc == 0 and procs.failures == [0, 1, 0]
    text = log_path.read_text()
    assert text.count("--- index 1") == 2 and text.count("--- index 0") == 1
    combined = json.loads((tmp_path / "progress.json").read_text())
    assert (combined["done"], combined["total"], combined["progress"]) == (6, 6, 100.0)
    assert combined["metrics"]["accepted"] == 3 and combined["state"] == "Succeeded"
    # Without retries the failure is the attempt's exit code.
    for f in tmp_path.glob("failed-*"):
        f.unlink()
    with open(log_path, "wb") as log:
        procs = IndexedProcesses([sys.executable, "-c", CHILD, str(tmp_path)],
                                 dict(os.environ), 3, tmp_path / "progress.json", log)
        while (rc := procs.poll()) is None:
            time.sleep(0.05)
    assert rc == 1 and procs.codes == {0: 0, 1: 1, 2: 0}


def _index_pod(i: int, created: str, message: dict | None = None,
               phase: str = "Running") -> dict:
    """A pod of an Indexed Job as the Job controller labels and annotates it
    (kubernetes pkg/controller/job/indexed_job_utils.go: addCompletionIndexAnnotation,
    addCompletionIndexLabel) and the kubelet reports a terminated container. Left out:
    ownerReferences, the pod spec, and every status field the executor does not read."""
    key = "batch.kubernetes.io/job-completion-index"
    pod: dict = {"metadata": {"name": f"j-{i}-{created}", "creationTimestamp": created,
                              "labels": {key: str(i)}, "annotations": {key: str(i)}},
                 "status": {"phase": phase}}
    if message is not None:
        pod["status"]["containerStatuses"] = [{"state": {"terminated": {
            "exitCode": 0 if message["state"] == "Succeeded" else 1,
            "message": json.dumps(message)}}}]
    return pod


def test_operator_sums_the_indices_of_a_sharded_job() -> None:
    """The Kubernetes executor's view of a 3-index generate Job: live /progress of the
    running indices, termination messages of the finished ones (a retried index's newer
    pod wins), summed into the stage's progress."""
    from polya_operator import executor as x

    job = {"metadata": {"name": "r-polya-generate-0", "labels": {}},
           "spec": {"completions": 3, "completionMode": "Indexed"}, "status": {}}
    done = {"stage": "generate", "state": "Succeeded", "done": 10, "total": 10,
            "progress": 100.0, "metrics": {"accepted": 4}}
    failed = {**done, "state": "Failed", "done": 3, "progress": 30.0}
    pods = [_index_pod(0, "t2", done, "Succeeded"),
            _index_pod(1, "t1", failed, "Failed"),  # index 1 failed once ...
            _index_pod(1, "t3"),                     # ... and runs again
            _index_pod(2, "t2")]
    live = {1: {**done, "state": "Running", "done": 5, "progress": 50.0},
            2: {**done, "state": "Running", "done": 2, "progress": 20.0}}
    both = x.index_progress(job, pods, live)
    assert both is not None
    assert (both["done"], both["total"], both["progress"]) == (17, 30, pytest.approx(56.67))
    assert both["state"] == "Running" and both["metrics"]["accepted"] == 12
    # Without live data: index 2 has not reported, index 1's failed try is what is known.
    quiet = x.index_progress(job, pods)
    assert quiet is not None and quiet["shards"] == {"count": 3, "reporting": 2}
    # A finished Job: every index's termination message, summed into the Attempt.
    pods = [_index_pod(i, "t4", done, "Succeeded") for i in range(3)]
    job["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    attempt = x.observe_job(job, pods)
    assert attempt.phase == "Succeeded" and attempt.progress is not None
    assert attempt.progress["done"] == 30 and attempt.progress["metrics"]["accepted"] == 12
    assert x.pod_index(x.compact_pod(pods[2])) == 2  # the index survives kopf's index
