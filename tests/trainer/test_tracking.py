"""Experiment tracking (spec.tracking) against a real MLflow tracking server.

The server is MLflow's own (`mlflow server` from .venv-mlflow, scripts/setup-mlflow.sh) on
loopback with a sqlite backend and a local artifact root; what the stages logged is read back
through its REST API (mlflow/server/handlers.py: /api/2.0/mlflow/...). The stages are the
real ones on the tiny model: generate, rl and evaluate in this process, midtrain in a
subprocess that is SIGKILLed after a checkpoint and then rerun.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from polya_trainer.runtime.hold import HOLD_ENV
from polya_trainer.runtime.progress import Reporter
from polya_trainer.runtime.tracking import TRACKING_FILE
from polya_trainer.runtime.workspace import Workspace
from polya_trainer.spec import parse_spec
from polya_trainer.stages import run_stage
from polya_trainer.stages import training as T
from test_midtrain import write_generated

ROOT = Path(__file__).resolve().parents[2]
MLFLOW = ROOT / ".venv-mlflow" / "bin" / "mlflow"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """REST reads of a running MLflow server."""

    def __init__(self, uri: str):
        self.uri = uri

    def get(self, path: str, **query: Any) -> dict[str, Any]:
        url = f"{self.uri}/api/2.0/mlflow/{path}?{urllib.parse.urlencode(query)}"
        with urllib.request.urlopen(url, timeout=30) as resp:
            return json.loads(resp.read())

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(f"{self.uri}/api/2.0/mlflow/{path}",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def runs(self, experiment: str) -> list[dict[str, Any]]:
        exp = self.get("experiments/get-by-name", experiment_name=experiment)["experiment"]
        return self.post("runs/search", {"experiment_ids": [exp["experiment_id"]],
                                         "max_results": 100}).get("runs", [])

    def run_of(self, experiment: str, arm: str, stage: str) -> dict[str, Any]:
        """The one run tagged with (arm, stage): fails when there are none or several."""
        found = [r for r in self.runs(experiment)
                 if tags(r).get("polya.arm") == arm and tags(r).get("polya.stage") == stage]
        assert len(found) == 1, f"{len(found)} runs for ({arm}, {stage})"
        return found[0]

    def history(self, run_id: str, key: str) -> list[dict[str, Any]]:
        return self.get("metrics/get-history", run_id=run_id, metric_key=key,
                        max_results=10000).get("metrics", [])

    def artifacts(self, run_id: str) -> set[str]:
        return {f["path"] for f in self.get("artifacts/list", run_id=run_id).get("files", [])}


def tags(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def params(run: dict[str, Any]) -> dict[str, str]:
    return {p["key"]: p["value"] for p in run["data"].get("params", [])}


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if not MLFLOW.exists():
        pytest.skip("no MLflow server venv: run scripts/setup-mlflow.sh (make test does)")
    base = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    proc = subprocess.Popen(
        [str(MLFLOW), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{base / 'mlflow.db'}",
         "--artifacts-destination", str(base / "artifacts")],
        stdout=(base / "server.log").open("wb"), stderr=subprocess.STDOUT)
    uri = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > end:
            proc.kill()
            pytest.fail("mlflow server did not start:\n"
                        + (base / "server.log").read_text()[-3000:])
        time.sleep(0.5)
    try:
        yield Server(uri)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


# --------------------------------------------------------------------------- in process


def test_stages_log_params_metrics_and_artifacts(mlflow_server: Server, tiny_model_dir: Path,
                                                 problems_file: Path, tmp_path: Path) -> None:
    """generate (polya), rl and evaluate (vanilla): one MLflow run each, with the stage's
    parameters, its metrics and its artifacts; TensorBoard event files beside them."""
    workdir = tmp_path / "toyrun"
    spec = parse_spec({
        "model": {"name": str(tiny_model_dir), "dtype": "float32"},
        "dataset": {"source": str(problems_file), "config": None, "limit": 4},
        "heuristics": {"ids": ["working_backwards"]}, "arms": ["vanilla", "polya"], "seed": 3,
        "stages": {
            "generate": {"backend": "hf", "exemplars": 0, "samplesPerHeuristic": 2,
                         "maxNewTokens": 16, "rounds": 1, "scorer": {"type": "none"}},
            "rl": {"dataset": {"source": str(problems_file), "config": None, "limit": 8},
                   "numGenerations": 2, "perDeviceBatchSize": 2, "maxSteps": 3,
                   "maxCompletionLength": 8, "learningRate": 1e-4, "saveSteps": 100},
            "evaluate": {"benchmarks": [], "checkpoints": ["base", "rl"],
                         "custom": [{"name": "toyprobs", "path": str(problems_file)}],
                         "k": [1, 2], "samples": 2, "limit": 2, "maxNewTokens": 8,
                         "backend": "hf", "resources": {"gpus": 0}}},
        "tracking": {"mlflow": {"trackingUri": mlflow_server.uri, "experiment": "inproc"},
                     "tensorboard": True}})
    for arm, stage in (("polya", "generate"), ("vanilla", "rl"), ("vanilla", "evaluate")):
        run_stage(stage, spec, arm, workdir, Reporter(stage, arm))

    assert len(mlflow_server.runs("inproc")) == 3
    for arm, stage in (("polya", "generate"), ("vanilla", "rl"), ("vanilla", "evaluate")):
        run = mlflow_server.run_of("inproc", arm, stage)
        info = run["info"]
        assert info["status"] == "FINISHED" and info["run_name"] == f"toyrun-{arm}-{stage}"
        ids = json.loads((workdir / arm / stage / TRACKING_FILE).read_text())
        assert ids["mlflow_run_id"] == info["run_id"]
        p = params(run)
        assert p["polya.arm"] == arm and p["polya.stage"] == stage and p["spec.seed"] == "3"
        assert p["spec.model.name"] == str(tiny_model_dir)
        metrics = {m["key"]: m for m in run["data"]["metrics"]}
        if stage == "generate":
            assert p["spec.stages.generate.samplesPerHeuristic"] == "2"
            assert p["spec.heuristics.ids"] == '["working_backwards"]'
            assert "card.json" in mlflow_server.artifacts(info["run_id"])
        if stage == "rl":
            assert p["spec.stages.rl.numGenerations"] == "2"
            assert p["num_generations"] == "2"  # the GRPOConfig, logged by MLflowCallback
            loss = mlflow_server.history(info["run_id"], "loss")
            assert sorted(m["step"] for m in loss) == [1, 2, 3]  # every optimizer step
            assert metrics["final/global_step"]["value"] == 3
            assert "metrics.json" in mlflow_server.artifacts(info["run_id"])
        if stage == "evaluate":
            results = json.loads((workdir / "vanilla/evaluate/results.json").read_text())
            assert {"report.md", "results.json"} <= mlflow_server.artifacts(info["run_id"])
            assert results["rl"]["toyprobs"]["n"] == 2
    # The Trainer's MLflow run is also the one the stage's own figures went to.
    # Credential-like variables (TOKENIZERS_PARALLELISM=false is a setting, not one).
    secrets = [v for k, v in os.environ.items()
               if ("TOKEN" in k or "KEY" in k) and not k.startswith("TOKENIZERS") and len(v) >= 8]
    for arm, stage in (("polya", "generate"), ("vanilla", "rl")):
        events = list((workdir / arm / stage / "tb").glob("events.out.tfevents.*"))
        assert events, f"no TensorBoard events for {arm}/{stage}"
    _check_tensorboard(workdir / "vanilla" / "rl" / "tb", "train/loss", [1, 2, 3])
    assert not [s for s in secrets if s and s in json.dumps(mlflow_server.runs("inproc"))]


def _check_tensorboard(logdir: Path, tag: str, steps: list[int]) -> None:
    """Read the event files back with TensorBoard's own loader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    scalars = acc.Tags()["scalars"]
    assert tag in scalars, f"{tag} not among {scalars}"
    assert sorted(e.step for e in acc.Scalars(tag)) == steps


# --------------------------------------------------------------------------- kill + resume


def _spec_file(tmp_path: Path, model: Path, uri: str) -> Path:
    spec = {"model": {"name": str(model), "dtype": "float32"}, "arms": ["polya"], "seed": 1,
            "stages": {"midtrain": {"epochs": 1, "learningRate": 3e-3, "perDeviceBatchSize": 2,
                                    "maxLength": 256, "maxSteps": 16, "saveSteps": 4}},
            "tracking": {"mlflow": {"trackingUri": uri, "experiment": "resume"}}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "polya.dev/v1alpha1", "kind": "PolyaRun",
                                    "metadata": {"name": "t"}, "spec": spec}))
    return path


def _start(spec_file: Path, workdir: Path, hold: Path | None = None) -> subprocess.Popen[bytes]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "trainer"))
    if hold:  # held at the end of step 6: checkpoint-4 saved, steps 1-5 logged
        env[HOLD_ENV] = f"6:{hold}"
    return subprocess.Popen(
        [sys.executable, "-m", "polya_trainer", "midtrain", "--spec", str(spec_file),
         "--workdir", str(workdir), "--arm", "polya"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_killed_midtrain_resumes_the_same_mlflow_run(mlflow_server: Server,
                                                     tiny_model_dir: Path,
                                                     tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    write_generated(workdir, "polya", n=32)
    spec_file = _spec_file(tmp_path, tiny_model_dir, mlflow_server.uri)
    ckpts = Workspace(workdir).checkpoints("polya", "midtrain")
    ids_file = workdir / "polya" / "midtrain" / TRACKING_FILE

    held = tmp_path / "held"
    proc = _start(spec_file, workdir, hold=held)
    end = time.monotonic() + 240
    logged: list[dict[str, Any]] = []
    while not (held.exists() and logged):  # held: nothing moves on while we look
        if proc.poll() is not None or time.monotonic() > end:
            proc.kill()
            out = proc.stdout.read().decode()[-3000:] if proc.stdout else ""
            pytest.fail(f"midtrain ended (rc {proc.returncode}) before step 6:\n{out}")
        if held.exists() and ids_file.exists():
            logged = mlflow_server.history(json.loads(ids_file.read_text())["mlflow_run_id"],
                                           "loss")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    first_id = json.loads(ids_file.read_text())["mlflow_run_id"]
    killed_at = T.checkpoint_step(T.newest_checkpoint(ckpts))
    assert killed_at == 4
    before = {m["step"] for m in mlflow_server.history(first_id, "loss")}
    assert before and max(before) < 16
    run = mlflow_server.run_of("resume", "polya", "midtrain")
    assert run["info"]["status"] == "RUNNING"  # SIGKILL: nobody ended it

    proc = _start(spec_file, workdir)
    out = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 0, out[-3000:]
    metrics = json.loads((workdir / "polya" / "midtrain" / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == killed_at

    assert json.loads(ids_file.read_text())["mlflow_run_id"] == first_id
    run = mlflow_server.run_of("resume", "polya", "midtrain")  # still exactly one run
    assert run["info"]["run_id"] == first_id and run["info"]["status"] == "FINISHED"
    steps = {m["step"] for m in mlflow_server.history(first_id, "loss")}
    assert before < steps and set(range(killed_at + 1, 17)) <= steps
    assert params(run)["spec.stages.midtrain.saveSteps"] == "4"
    assert params(run)["max_steps"] == "16"  # SFTConfig via MLflowCallback
    assert "metrics.json" in mlflow_server.artifacts(first_id)


def test_wandb_offline_run_in_the_stage_directory(tiny_model_dir: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """W&B in offline mode (no server, no key): the midtrain stage writes one offline run,
    with the id kept in tracking.json, under <arm>/midtrain/wandb. wandb 0.31 has no Python
    reader for its .wandb record files (the Go core writes them), so the check is on the
    run's files and on the logged keys appearing in the records."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    workdir = tmp_path / "wb"
    write_generated(workdir, "polya", n=8)
    spec = parse_spec({"model": {"name": str(tiny_model_dir), "dtype": "float32"},
                       "arms": ["polya"], "stages": {"midtrain": {
                           "perDeviceBatchSize": 4, "maxSteps": 2, "maxLength": 256}},
                       "tracking": {"wandb": {"project": "p", "mode": "offline"}}})
    run_stage("midtrain", spec, "polya", workdir, Reporter("midtrain", "polya"))
    ids = json.loads((workdir / "polya/midtrain" / TRACKING_FILE).read_text())
    runs = list((workdir / "polya/midtrain/wandb").rglob(f"offline-run-*-{ids['wandb_run_id']}"))
    assert len(runs) == 1
    records = (runs[0] / f"run-{ids['wandb_run_id']}.wandb").read_bytes()
    for key in (b"train/loss", b"final/global_step", b"spec.stages.midtrain.maxSteps"):
        assert key in records, key
    assert (runs[0] / "files" / "metrics.json").is_file()  # the stage's artifact


# --------------------------------------------------------------------------- credentials


def test_plan_shows_secret_references_never_values(tmp_path: Path) -> None:
    """`polya plan -o yaml`: the stage Jobs take the W&B key and the MLflow token from
    secretKeyRefs; the rendered objects (Jobs, the spec ConfigMap) hold no credential value
    and the tracking block keeps only the references."""
    spec = {"model": {"name": "m"}, "arms": ["vanilla"],
            "tracking": {"mlflow": {"trackingUri": "http://mlflow:5000",
                                    "tokenSecret": {"name": "mlflow-cred", "key": "tok"}},
                         "wandb": {"project": "p", "apiKeySecret": {"name": "wandb-cred",
                                                                    "key": "apikey"}}}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "polya.dev/v1alpha1", "kind": "PolyaRun",
                                    "metadata": {"name": "tr"}, "spec": spec}))
    secret_value = "wandb-key-0123456789abcdef"  # in the environment, as a careless user's
    env = dict(os.environ, WANDB_API_KEY=secret_value, MLFLOW_TRACKING_TOKEN=secret_value)
    out = subprocess.run([sys.executable, "-m", "polya_operator.cli", "plan", str(path),
                          "-o", "yaml"], capture_output=True, text=True, env=env, check=True)
    assert secret_value not in out.stdout + out.stderr
    objects = list(yaml.safe_load_all(out.stdout))
    jobs = [o for o in objects if o["kind"] == "Job"]
    assert jobs
    for job in jobs:
        for container in job["spec"]["template"]["spec"]["containers"]:
            env_vars = {e["name"]: e for e in container.get("env", [])}
            assert env_vars["WANDB_API_KEY"] == {"name": "WANDB_API_KEY", "valueFrom": {
                "secretKeyRef": {"name": "wandb-cred", "key": "apikey"}}}
            assert env_vars["MLFLOW_TRACKING_TOKEN"] == {
                "name": "MLFLOW_TRACKING_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": "mlflow-cred", "key": "tok"}}}
    configmaps = [o for o in objects if o["kind"] == "ConfigMap"]
    assert configmaps and "wandb-cred" in json.dumps(configmaps)
