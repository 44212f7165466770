"""The termination message: a file of its own, written in place, at most 4096 bytes, only by
rank 0, also on SIGTERM; and what the operator reads back from it (executor.parse_progress).
The bind-mount behaviour itself (EBUSY on rename) is shown on the node double in
tests/node/test_node_double.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from polya_operator.executor import observe_job, parse_progress
from polya_trainer.runtime.progress import (
    TERMINATION_LIMIT,
    Reporter,
    process_rank,
    termination_message,
)

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_written_in_place_and_separate_from_progress(tmp_path: Path) -> None:
    progress, term = tmp_path / "progress.json", tmp_path / "termination-log"
    term.write_text("x" * 10000)  # what is there is truncated, not appended to
    inode = term.stat().st_ino
    rep = Reporter("midtrain", "polya", path=progress, termination_path=term, main=True)
    rep.start(total=10, unit="steps")
    rep.update(done=10, loss=0.5, learning_rate=1e-4, step=10)
    rep.finish({"model": "polya/midtrain/model"})
    assert term.read_text().startswith("x")  # nothing written before the end
    text = rep.write_termination_message(reason="Completed")
    assert term.stat().st_ino == inode, "the file was replaced, not written in place"
    assert term.read_text() == text and len(text.encode()) <= TERMINATION_LIMIT
    msg = json.loads(text)
    assert msg["state"] == "Succeeded" and msg["reason"] == "Completed"
    assert msg["stage"] == "midtrain" and msg["outputs"] == {"model": "polya/midtrain/model"}
    assert msg["metrics"]["loss"] == 0.5
    assert json.loads(progress.read_text())["state"] == "Succeeded"  # the progress file too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["progress.json", "termination-log"]


def test_operator_reads_the_termination_message() -> None:
    snap = {"stage": "rl", "arm": "polya", "state": "Failed", "message": "OOM in step 3",
            "progress": 30.0, "metrics": {"reward_mean": 0.25}, "outputs": {}}
    text = termination_message(snap, reason="RuntimeError")
    assert parse_progress(text)["reason"] == "RuntimeError"
    job = {"metadata": {"name": "r-polya-rl-0", "labels": {
        "polya.dev/arm": "polya", "polya.dev/stage": "rl", "polya.dev/attempt": "0"}},
        "status": {"conditions": [{"type": "Failed", "status": "True",
                                   "reason": "BackoffLimitExceeded"}]}}
    pod = {"metadata": {"creationTimestamp": "2025-01-01T00:00:00Z"}, "status": {
        "containerStatuses": [{"state": {"terminated": {"exitCode": 1, "message": text}}}]}}
    info = observe_job(job, [pod])
    assert info.phase == "Failed" and info.message == "OOM in step 3"
    assert info.progress["metrics"] == {"reward_mean": 0.25}


def test_termination_message_fits_with_huge_content() -> None:
    snap = {"stage": "evaluate", "arm": "polya", "state": "Failed", "message": "e" * 100_000,
            "metrics": {f"m{i:03d}": float(i) for i in range(500)},
            "outputs": {f"o{i}": "p" * 200 for i in range(100)}}
    text = termination_message(snap, reason="ValueError")
    assert len(text.encode()) <= TERMINATION_LIMIT
    msg = json.loads(text)
    assert msg["state"] == "Failed" and msg["reason"] == "ValueError"
    assert len(msg["metrics"]) <= 8


@pytest.mark.parametrize(("env", "rank"), [({}, 0), ({"RANK": "1"}, 1),
                                           ({"LOCAL_RANK": "2"}, 2),
                                           ({"RANK": "0", "LOCAL_RANK": "3"}, 0)])
def test_process_rank(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], rank: int) -> None:
    for var in ("RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert process_rank() == rank


def test_other_ranks_stay_silent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("POLYA_PROGRESS_FILE", str(tmp_path / "progress.json"))
    monkeypatch.setenv("POLYA_TERMINATION_MESSAGE_PATH", str(tmp_path / "term"))
    monkeypatch.setenv("POLYA_METRICS_PORT", str(port))
    rep = Reporter("rl", "polya")
    rep.start(total=2)
    rep.finish({})
    assert rep.write_termination_message() is None
    assert list(tmp_path.iterdir()) == []
    with socket.socket() as s:  # the port is still free: rank 1 bound nothing
        s.bind(("0.0.0.0", port))
    monkeypatch.setenv("RANK", "0")
    main = Reporter("rl", "polya")
    try:
        with socket.socket() as s, pytest.raises(OSError):
            s.bind(("0.0.0.0", port))
    finally:
        main.close()


def test_sigterm_writes_the_termination_message(tmp_path: Path) -> None:
    term = tmp_path / "termination-log"
    term.touch()
    code = (
        "import time\n"
        "from polya_trainer.runtime.progress import Reporter\n"
        f"r = Reporter('generate', 'polya', termination_path={str(term)!r}, main=True)\n"
        "r.install_sigterm()\n"
        "r.start(total=100)\n"
        "r.update(done=40, accepted=3)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT / "trainer")))
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 143
    msg = json.loads(term.read_text())
    assert msg["state"] == "Terminated" and msg["reason"] == "SIGTERM"
    assert msg["progress"] == 40.0 and msg["metrics"]["accepted"] == 3


def test_failed_stage_leaves_failed_message(tmp_path: Path) -> None:
    """The pod entrypoint (polya stage) on a model that does not exist: exit 1 and a
    termination message naming the failure."""
    spec = tmp_path / "run.yaml"
    spec.write_text(json.dumps({"apiVersion": "polya.dev/v1alpha1", "kind": "PolyaRun",
                                "metadata": {"name": "f"}, "spec": {
                                    "model": {"name": str(tmp_path / "missing")},
                                    "dataset": {"source": str(tmp_path / "missing.jsonl")},
                                    # hf: with vllm (the default) missing from this venv the
                                    # stage would fail earlier, as InvalidConfig (exit 2)
                                    "stages": {"generate": {"backend": "hf"}}}}))
    term = tmp_path / "termination-log"
    term.touch()
    env = dict(os.environ, POLYA_TERMINATION_MESSAGE_PATH=str(term),
               POLYA_PROGRESS_FILE=str(tmp_path / "progress.json"),
               PYTHONPATH=f"{ROOT}/trainer:{ROOT}/operator")
    env.pop("RANK", None)
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "polya_trainer", "generate", "--spec", str(spec),
                          "--workdir", str(tmp_path / "w"), "--arm", "polya"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stderr[-2000:]
    msg = json.loads(term.read_text())
    assert msg["state"] == "Failed" and msg["stage"] == "generate", (msg, time.monotonic() - t0)
    assert msg["reason"] and msg["message"]


def test_a_gpu_stage_without_cuda_fails_at_once_naming_what_it_found(tmp_path: Path) -> None:
    """A stage given GPUs in its Job (POLYA_REQUIRE_CUDA=1, set by the operator) on a machine
    where torch sees no CUDA device (this one): exit 2, reason InvalidConfig (not retried),
    the message naming the field, torch's CUDA build, the driver and the driver requirement."""
    spec = tmp_path / "run.yaml"
    spec.write_text(json.dumps({"apiVersion": "polya.dev/v1alpha1", "kind": "PolyaRun",
                                "metadata": {"name": "g"}, "spec": {
                                    "model": {"name": str(tmp_path / "missing")},
                                    "stages": {"evaluate": {"backend": "hf",
                                                            "resources": {"gpus": 1}}}}}))
    term = tmp_path / "termination-log"
    term.touch()
    env = dict(os.environ, POLYA_TERMINATION_MESSAGE_PATH=str(term), POLYA_REQUIRE_CUDA="1",
               PYTHONPATH=f"{ROOT}/trainer:{ROOT}/operator")
    env.pop("RANK", None)
    out = subprocess.run([sys.executable, "-m", "polya_trainer", "evaluate", "--spec", str(spec),
                          "--workdir", str(tmp_path / "w"), "--arm", "vanilla"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    msg = json.loads(term.read_text())
    assert msg["state"] == "Failed" and msg["reason"] == "InvalidConfig"
    for part in ("spec.stages.evaluate.resources.gpus", "asks for 1 GPU", "built for CUDA",
                 "driver:", "NVIDIA driver >= 580"):
        assert part in msg["message"], msg["message"]
