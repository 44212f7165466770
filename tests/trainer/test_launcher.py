"""The stage command for 0/1 GPU, several GPUs and several nodes, checked against the real
`accelerate launch` argument parser (with the Kubernetes placeholder substituted), and a real
2-process run of midtrain and rl on CPU through the command the operator's Job carries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from polya_trainer.runtime.launcher import launch_command, stage_command
from polya_trainer.runtime.workspace import Workspace

TAIL = ["rl", "--spec", "/etc/polya/run.yaml", "--workdir", "/workspace/r", "--arm", "polya"]


def parse(cmd: list[str], rank: str = "0") -> object:
    from accelerate.commands.launch import launch_command_parser

    assert cmd[:2] == ["accelerate", "launch"]
    args = [rank if a == "$(JOB_COMPLETION_INDEX)" else a for a in cmd[2:]]
    return launch_command_parser().parse_args(args)


@pytest.mark.parametrize("gpus", [0, 1])
def test_zero_or_one_gpu_is_a_plain_process(gpus: int) -> None:
    cmd = stage_command("rl", "polya", "/etc/polya/run.yaml", "/workspace/r", gpus=gpus)
    assert cmd == ["python", "-m", "polya_trainer", *TAIL]


def test_inference_stages_stay_one_process() -> None:
    cmd = stage_command("generate", "polya", "/s.yaml", "/w", gpus=4)
    assert cmd[:3] == ["python", "-m", "polya_trainer"]
    with pytest.raises(ValueError, match="one process"):
        stage_command("evaluate", "polya", "/s.yaml", "/w", gpus=1, nodes=2, job_name="j")


def test_four_gpus_one_process_each() -> None:
    cmd = stage_command("rl", "polya", "/etc/polya/run.yaml", "/workspace/r", gpus=4)
    assert cmd[:4] == ["accelerate", "launch", "--num_processes", "4"]
    assert cmd[-len(TAIL) - 2:] == ["-m", "polya_trainer", *TAIL]
    a = parse(cmd)
    assert (a.num_processes, a.num_machines, a.multi_gpu, a.module) == (4, 1, True, True)
    assert a.training_script == "polya_trainer" and a.training_script_args == TAIL
    assert a.main_process_ip is None and a.mixed_precision == "no"


def test_two_nodes_of_four_gpus_rendezvous_at_pod_zero() -> None:
    cmd = stage_command("rl", "polya", "/etc/polya/run.yaml", "/workspace/r", gpus=4, nodes=2,
                        job_name="llama-polya-rl-0", port=29511)
    assert "$(JOB_COMPLETION_INDEX)" in cmd  # expanded by Kubernetes from the Job's env
    for rank in ("0", "1"):
        a = parse(cmd, rank)
        assert a.num_processes == 8 and a.num_machines == 2  # total over the nodes
        assert a.machine_rank == int(rank)
        assert a.main_process_ip == "llama-polya-rl-0-0.llama-polya-rl-0"
        assert a.main_process_port == 29511 and a.rdzv_backend == "static"
        assert a.training_script_args == TAIL


def test_multi_node_needs_the_job_name_and_sane_counts() -> None:
    with pytest.raises(ValueError, match="Job name"):
        stage_command("midtrain", "polya", "/s", "/w", gpus=4, nodes=2)
    with pytest.raises(ValueError):
        stage_command("midtrain", "polya", "/s", "/w", gpus=-1)
    with pytest.raises(ValueError):
        stage_command("midtrain", "polya", "/s", "/w", gpus=1, nodes=0)


def test_launch_command_keeps_the_older_argument_order() -> None:
    assert launch_command("midtrain", "/s", "/w", "star", gpus=2, nodes=1) == stage_command(
        "midtrain", "star", "/s", "/w", gpus=2)


def test_processes_per_node_defaults_to_the_gpu_count() -> None:
    cmd = stage_command("midtrain", "polya", "/s", "/w", gpus=0, processes=2, port=29533)
    a = parse(cmd)
    assert (a.num_processes, a.num_machines, a.main_process_port) == (2, 1, 29533)
    assert parse(stage_command("rl", "polya", "/s", "/w", gpus=4, nodes=2, job_name="j",
                               processes=2))
    assert parse(stage_command("rl", "polya", "/s", "/w", gpus=4, nodes=2, job_name="j",
                               processes=2)).num_processes == 4
    assert parse(stage_command("rl", "polya", "/s", "/w", gpus=8)).num_processes == 8
    # One process requested on a 4-GPU node, and inference stages: a plain process.
    assert stage_command("rl", "polya", "/s", "/w", gpus=4, processes=1)[:2] == [
        "python", "-m"]
    assert stage_command("generate", "polya", "/s", "/w", processes=4)[:2] == ["python", "-m"]
    with pytest.raises(ValueError, match="processesPerNode"):
        stage_command("rl", "polya", "/s", "/w", processes=0)


# --------------------------------------------------------------------------- real launcher


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_generated(workdir: Path, arm: str, n: int = 16) -> None:
    """Parquet shards and a manifest in the layout generate.py writes (columns it writes)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from polya_trainer.runtime.artifacts import write_manifest
    from polya_trainer.toy import word_problems

    gen = Workspace(workdir).stage(arm, "generate")
    (gen / "data").mkdir(parents=True, exist_ok=True)
    rows = [{"question": p["question"], "completion": p["solution"], "answer": p["answer"],
             "heuristic": "work_backwards",
             "prompt_messages": json.dumps([{"role": "user", "content": p["question"]}])}
            for p in word_problems(n, 3)]
    pq.write_table(pa.Table.from_pylist(rows), gen / "data" / "shard-00000.parquet")
    write_manifest(gen, outputs={"data": f"{arm}/generate/data"})


def _job_process(spec: dict[str, Any], stage: str, tmp: Path) -> tuple[list[str], dict[str, str],
                                                                        Path]:
    """The container command and env of the stage's Job as the operator builds it, with the
    pod's paths mapped into `tmp`, the venv's `accelerate` and free ports."""
    from polya_operator import resources as R
    from polya_trainer.spec import PolyaRunSpec

    run = PolyaRunSpec.model_validate(spec)
    meta = {"name": "mp", "namespace": "t", "uid": "u"}
    job = R.job(meta, run, "polya", stage, 0, image="img")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    spec_file = tmp / "run.yaml"  # the ConfigMap's file, mounted at SPEC_FILE in the pod
    spec_file.write_text(R.configmap(meta, run)["data"]["run.yaml"])
    workdir = tmp / "ws"
    pod_workdir = f"{run.storage.mount_path.rstrip('/')}/mp"
    cmd = [str(spec_file) if a == R.SPEC_FILE else str(workdir) if a == pod_workdir else a
           for a in container["command"]]
    assert cmd[:2] == ["accelerate", "launch"], cmd
    cmd[0] = str(Path(sys.executable).parent / "accelerate")
    cmd[cmd.index("--main_process_port") + 1] = str(_free_port())
    env = dict(os.environ)
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
    progress = tmp / f"{stage}-progress.json"
    (tmp / "termination-log").touch()
    env.update(POLYA_PROGRESS_FILE=str(progress), POLYA_METRICS_PORT=str(_free_port()),
               POLYA_TERMINATION_MESSAGE_PATH=str(tmp / "termination-log"),
               HOME=str(tmp), HF_HOME=str(tmp / "hf"), OMP_NUM_THREADS="1")
    return cmd, env, progress


def _launch(spec: dict[str, Any], stage: str, tmp: Path) -> tuple[dict[str, Any], Path]:
    cmd, env, progress = _job_process(spec, stage, tmp)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    (tmp / f"{stage}.log").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, f"exit {proc.returncode}; log: {tmp / f'{stage}.log'}"
    metrics = json.loads((tmp / "ws" / "polya" / stage / "metrics.json").read_text())
    return metrics, progress


@pytest.mark.slow
def test_two_process_midtrain_and_rl_through_the_jobs_launcher(
        tiny_model_dir: Path, problems_file: Path, tmp_path: Path) -> None:
    """midtrain and rl with resources.processesPerNode=2 on CPU (gloo), started with the exact
    command and env of the operator's Job: both ranks train (metrics say 2 processes), rank 0
    alone writes checkpoints, the model and the manifest, and a rerun with more steps resumes
    from the 2-process checkpoint."""
    from polya_trainer.runtime.artifacts import is_complete
    from polya_trainer.stages.training import MARKER, checkpoint_step

    two = {"processesPerNode": 2}
    spec: dict[str, Any] = {
        "model": {"name": str(tiny_model_dir), "dtype": "float32"}, "arms": ["polya"],
        "seed": 1, "stages": {
            "generate": {"backend": "hf"},
            "midtrain": {"epochs": 1, "maxSteps": 2, "saveSteps": 1, "perDeviceBatchSize": 2,
                         "maxLength": 256, "learningRate": 1e-3, "resources": two},
            "rl": {"dataset": {"source": str(problems_file)}, "numGenerations": 2,
                   "perDeviceBatchSize": 2, "maxCompletionLength": 8, "maxSteps": 1,
                   "saveSteps": 1, "learningRate": 1e-4, "resources": two}}}
    _write_generated(tmp_path / "ws", "polya")

    metrics, progress = _launch(spec, "midtrain", tmp_path)
    stage = tmp_path / "ws" / "polya" / "midtrain"
    assert (metrics["processes"], metrics["global_step"], metrics["resumed_from_step"]) == (
        2, 2, None)
    assert is_complete(stage) and is_complete(stage / "model")
    ckpts = sorted(p.name for p in (stage / "checkpoints").glob("checkpoint-*"))
    assert ckpts == ["checkpoint-1", "checkpoint-2"]
    for name in ckpts:  # one set of weights and one marker per checkpoint (rank 0's)
        c = stage / "checkpoints" / name
        assert checkpoint_step(c) is not None and (c / MARKER).is_file()
        assert len(list(c.glob("*.safetensors"))) == 1
    assert json.loads(progress.read_text())["state"] == "Succeeded"

    # Resume: the model and manifest go, the 2-process checkpoints stay; 2 more steps.
    import shutil

    shutil.rmtree(stage / "model")
    (stage / "MANIFEST.json").unlink()
    spec["stages"]["midtrain"]["maxSteps"] = 4
    metrics, _ = _launch(spec, "midtrain", tmp_path)
    assert (metrics["processes"], metrics["resumed_from_step"], metrics["global_step"],
            metrics["steps_this_run"]) == (2, 2, 4, 2)

    metrics, progress = _launch(spec, "rl", tmp_path)
    assert (metrics["processes"], metrics["global_step"], metrics["use_vllm"]) == (2, 1, False)
    assert is_complete(tmp_path / "ws" / "polya" / "rl" / "model")
    assert json.loads(progress.read_text())["state"] == "Succeeded"


@pytest.mark.slow
def test_two_process_invalid_config_reaches_the_operator(tiny_model_dir: Path,
                                                         problems_file: Path,
                                                         tmp_path: Path) -> None:
    """vLLM asked for but missing, rl on 2 processes: the launcher exits 1 (torch elastic's
    code for any failed worker, so podFailurePolicy's exit code 2 cannot match), and rank 0's
    termination message says InvalidConfig, which the planner turns into a failure without
    retry (tests/unit/test_planner.py)."""
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("needs a venv without vllm")
    spec: dict[str, Any] = {
        "model": {"name": str(tiny_model_dir), "dtype": "float32"}, "arms": ["vanilla"],
        "stages": {"generate": {"backend": "vllm"},
                   "rl": {"dataset": {"source": str(problems_file)}, "numGenerations": 2,
                          "perDeviceBatchSize": 2, "resources": {"processesPerNode": 2}}}}
    run = dict(spec, arms=["polya"])  # _job_process builds the polya arm's Job
    cmd, env, _ = _job_process(run, "rl", tmp_path)
    cmd[cmd.index("--arm") + 1] = "vanilla"
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 1, proc.stderr[-3000:]
    msg = json.loads((tmp_path / "termination-log").read_text())
    assert (msg["state"], msg["reason"]) == ("Failed", "InvalidConfig"), msg
    assert "spec.stages.generate.backend" in msg["message"]
