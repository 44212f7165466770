"""Atomic artifacts, manifests, and the progress reporter (file, HTTP, Prometheus)."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pytest
from polya_trainer.runtime import artifacts as a
from polya_trainer.runtime.progress import TERMINATION_LIMIT, Reporter, compact, read_progress


def test_atomic_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "out" / "x.json"
    a.atomic_write_json(target, {"a": 1})
    a.atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in target.parent.iterdir()] == ["x.json"]


def test_atomic_path_failure_keeps_the_old_version(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with a.atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "w.bin").write_bytes(b"v1")
    with pytest.raises(RuntimeError), a.atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "w.bin").write_bytes(b"half")
        raise RuntimeError("killed mid-write")
    assert (target / "w.bin").read_bytes() == b"v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_manifest_detects_missing_truncated_and_corrupt_files(tmp_path: Path) -> None:
    d = tmp_path / "stage"
    d.mkdir()
    (d / "a.txt").write_text("hello")
    (d / "sub").mkdir()
    (d / "sub" / "b.txt").write_text("world")
    a.write_manifest(d, outputs={"x": "stage/a.txt"})
    body = a.read_manifest(d)
    assert body is not None and set(body["files"]) == {"a.txt", "sub/b.txt"}
    assert body["outputs"] == {"x": "stage/a.txt"}
    (d / "sub" / "b.txt").write_text("WORLD")  # same size, different bytes
    assert a.is_complete(d) and not a.is_complete(d, verify=True)
    (d / "a.txt").write_text("hell")  # truncated
    assert not a.is_complete(d)
    (d / "a.txt").unlink()
    assert not a.is_complete(d)
    (d / a.MANIFEST).write_text("{not json")
    assert a.read_manifest(d) is None


def test_reporter_file_eta_and_finish(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    seen: list[dict] = []
    r = Reporter("midtrain", "polya", path=path, min_interval=0)
    r.listeners.append(seen.append)
    r.start(total=10, unit="steps")
    r.update(done=5, loss=1.25, learning_rate=1e-5, bogus=float("nan"))
    snap = read_progress(path)
    assert snap is not None and snap["progress"] == 50.0 and snap["unit"] == "steps"
    assert snap["metrics"] == {"loss": 1.25, "learning_rate": 1e-05}
    assert snap["etaSeconds"] is not None
    r.finish({"model": "polya/midtrain/model"})
    final = read_progress(path)
    assert final["state"] == "Succeeded" and final["progress"] == 100.0
    assert final["outputs"] == {"model": "polya/midtrain/model"}
    assert seen and seen[-1]["state"] == "Succeeded"


def test_termination_message_fits_the_kubelet_limit() -> None:
    snap = {"stage": "evaluate", "arm": "polya", "message": "x" * 10_000,
            "metrics": {f"pass@{k}/bench{i}": 0.5 for k in range(64) for i in range(8)},
            "outputs": {"report": "report/report.md"}}
    text = compact(snap)
    assert len(text.encode()) <= TERMINATION_LIMIT
    assert json.loads(text)["stage"] == "evaluate"


def test_reporter_serves_progress_and_metrics(tmp_path: Path) -> None:
    r = Reporter("rl", "vanilla", path=tmp_path / "p.json", port=0)
    port = r.serve(0, host="127.0.0.1")
    try:
        r.start(total=4, unit="steps")
        r.update(done=1, reward_mean=0.25)
        body = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/progress").read())
        assert body["progress"] == 25.0 and body["metrics"]["reward_mean"] == 0.25
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        assert 'polyarun_stage_progress_ratio{arm="vanilla",stage="rl"} 0.25' in metrics
        assert 'polyarun_train_reward_mean{arm="vanilla",stage="rl"} 0.25' in metrics
    finally:
        r.close()


def test_progress_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "term.json"
    monkeypatch.setenv("POLYA_PROGRESS_FILE", str(path))
    Reporter("generate", "star").finish({}, state="Failed", message="DataError: no rows")
    snap = read_progress(path)
    assert snap["state"] == "Failed" and "no rows" in snap["message"]
    assert not any(p.name.endswith(".tmp") for p in path.parent.iterdir())
    assert os.environ["POLYA_PROGRESS_FILE"] == str(path)
