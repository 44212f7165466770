"""Experiment tracking (``spec.tracking``): one tracking run per (arm, stage).

Backends, each through its own library (nothing here speaks a tracking protocol):

* **MLflow** through ``mlflow.MlflowClient`` and the fluent run that transformers'
  ``MLflowCallback`` logs to. The stage opens the run itself (``mlflow.start_run(run_id=…)``)
  before the Trainer exists; the callback then finds an active run, logs the Trainer's
  arguments as parameters and every log step as metrics into it
  (transformers/integrations/integration_utils.py, ``MLflowCallback.setup``: it starts a run
  only when none is active), and leaves ending it to us.
* **Weights & Biases** through ``wandb.init`` with a fixed run id and ``resume="allow"``;
  ``WandbCallback.setup`` reuses ``wandb.run`` when one exists. The API key reaches the pod
  only as the ``WANDB_API_KEY`` env var from a Secret (the operator's ``secretKeyRef``).
* **TensorBoard**: event files under ``<workdir>/<arm>/<stage>/tb``, written by
  ``torch.utils.tensorboard.SummaryWriter`` here and by ``TensorBoardCallback`` (which reads
  ``TENSORBOARD_LOGGING_DIR``) in the training stages.

**Resume.** The run ids are written to ``<workdir>/<arm>/<stage>/tracking.json`` (atomically)
before the stage does any work. A rerun (retried Job, resumed checkpoint, a SIGKILLed
process) reads them and continues the same MLflow and W&B runs; the Trainer logs with
``step = global_step``, so after a resume the metric history continues from the checkpoint's
step. Steps logged after the last checkpoint and before a kill are logged again by the rerun
(two values at those steps).

Only the main process (rank 0) tracks. Tracking is auxiliary: a backend that fails to start
is skipped with a warning (the stage still runs), and logging errors are warnings.
Credentials are never read or logged here: the libraries take them from the environment.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from polya_trainer.runtime.artifacts import atomic_write_json, read_manifest
from polya_trainer.runtime.progress import is_main_process
from polya_trainer.runtime.workspace import RunDir, Workspace
from polya_trainer.spec import PolyaRunSpec

log = logging.getLogger(__name__)

TRACKING_FILE = "tracking.json"
TB_DIR = "tb"
WANDB_DIR = "wandb"
TRAINING_STAGES = ("midtrain", "rl")
PROGRESS_INTERVAL = 2.0  # seconds between metric logs from progress updates
_ACTIVE: StageTracker | None = None  # the tracker of the stage running in this process


def flatten(data: Any, prefix: str = "") -> dict[str, str]:
    """Nested dicts as dotted keys; lists and scalars as JSON text."""
    if isinstance(data, dict):
        out: dict[str, str] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: data if isinstance(data, str) else json.dumps(data)}


def stage_params(spec: PolyaRunSpec, arm: str, stage: str, run: str) -> dict[str, str]:
    """What defines an (arm, stage): the run, the model, the data and the stage's settings."""
    dumped = spec.dump()
    params = {"polya.run": run, "polya.arm": arm, "polya.stage": stage,
              "spec.seed": str(spec.seed)}
    params.update(flatten(dumped["model"], "spec.model"))
    if stage == "generate":
        params.update(flatten(dumped["dataset"], "spec.dataset"))
        params.update(flatten(dumped["heuristics"], "spec.heuristics"))
    params.update(flatten(dumped["stages"][stage], f"spec.stages.{stage}"))
    return params


def metric_name(key: str) -> str:
    """MLflow accepts letters, digits, ``_ - . space : /`` in names."""
    return "".join(c if c.isalnum() or c in "_-. :/" else "_" for c in key)


class StageTracker:
    """The tracking runs of one (arm, stage) in this process."""

    def __init__(self, spec: PolyaRunSpec, arm: str, stage: str, workdir: RunDir,
                 run: str | None = None):
        self.spec, self.arm, self.stage = spec, arm, stage
        self.ws = Workspace.of(workdir)
        self.run = run or self.ws.name
        self.name = f"{self.run}-{arm}-{stage}"
        self.dir = self.ws.stage(arm, stage)
        self.ids: dict[str, str] = {}
        self.backends: list[str] = []  # the ones that started: "mlflow", "wandb", "tensorboard"
        self._mlflow: Any = None  # the MlflowClient
        self._wandb: Any = None  # the wandb Run
        self._tb: Any = None  # the SummaryWriter
        self._env: dict[str, str | None] = {}
        self._last: tuple[float, dict[str, float]] = (0.0, {})

    # ------------------------------------------------------------------ start / stop
    def start(self) -> None:
        cfg = self.spec.tracking
        if not is_main_process() or not (cfg.mlflow or cfg.wandb or cfg.tensorboard):
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            self.ids = dict(json.loads((self.dir / TRACKING_FILE).read_text()))
        for backend, starter in (("mlflow", self._start_mlflow), ("wandb", self._start_wandb),
                                 ("tensorboard", self._start_tensorboard)):
            if getattr(cfg, backend):
                try:
                    starter()
                except Exception as exc:  # tracking must not stop the stage
                    log.warning("tracking: %s did not start (%s: %s); the stage runs "
                                "without it", backend, type(exc).__name__, exc)
                    continue
                self.backends.append(backend)
        atomic_write_json(self.dir / TRACKING_FILE, self.ids)
        self.log_params(stage_params(self.spec, self.arm, self.stage, self.run))

    def _start_mlflow(self) -> None:
        import mlflow

        cfg = self.spec.tracking.mlflow
        assert cfg is not None
        mlflow.set_tracking_uri(cfg.tracking_uri)
        client = mlflow.MlflowClient(cfg.tracking_uri)
        experiment = cfg.experiment or self.run
        found = client.get_experiment_by_name(experiment)
        exp_id = found.experiment_id if found else mlflow.set_experiment(experiment).experiment_id
        run_id = self.ids.get("mlflow_run_id")
        if run_id:
            try:
                client.get_run(run_id)
            except mlflow.exceptions.MlflowException:
                log.warning("tracking: MLflow run %s is gone; starting a new one", run_id)
                run_id = None
        if not run_id:
            tags = {"polya.run": self.run, "polya.arm": self.arm, "polya.stage": self.stage}
            run_id = client.create_run(exp_id, run_name=self.name, tags=tags).info.run_id
            self.ids["mlflow_run_id"] = run_id
            atomic_write_json(self.dir / TRACKING_FILE, self.ids)  # before any work
        # The fluent run MLflowCallback logs into; it also marks the run RUNNING again.
        mlflow.set_experiment(experiment_id=exp_id)
        mlflow.start_run(run_id=run_id, run_name=self.name)
        self._mlflow = client

    def _start_wandb(self) -> None:
        import wandb
        from wandb.sdk.lib.runid import generate_id

        cfg = self.spec.tracking.wandb
        assert cfg is not None
        run_id = self.ids.setdefault("wandb_run_id", generate_id())
        atomic_write_json(self.dir / TRACKING_FILE, self.ids)
        directory = self.dir / WANDB_DIR
        directory.mkdir(parents=True, exist_ok=True)
        self._wandb = wandb.init(project=cfg.project, entity=cfg.entity, id=run_id,
                                 resume="allow", mode=cfg.mode, dir=str(directory),
                                 name=self.name, group=self.run, job_type=self.stage,
                                 reinit="finish_previous")

    def _start_tensorboard(self) -> None:
        from torch.utils.tensorboard import SummaryWriter

        logdir = self.dir / TB_DIR
        self._tb = SummaryWriter(log_dir=str(logdir))
        self._setenv("TENSORBOARD_LOGGING_DIR", str(logdir))  # TensorBoardCallback's

    def _setenv(self, key: str, value: str) -> None:
        self._env.setdefault(key, os.environ.get(key))
        os.environ[key] = value

    def close(self, status: str = "FINISHED") -> None:
        """End the runs: FINISHED, FAILED, or KILLED (SIGTERM; a rerun resumes them)."""
        if "mlflow" in self.backends:
            with self._warn("mlflow"):
                import mlflow

                mlflow.end_run(status)
        if "wandb" in self.backends and self._wandb is not None:
            with self._warn("wandb"):
                self._wandb.finish(exit_code=0 if status == "FINISHED" else 1)
        if self._tb is not None:
            self._tb.close()
        for key, old in self._env.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
        self.backends = []

    # ------------------------------------------------------------------ logging
    @contextlib.contextmanager
    def _warn(self, backend: str) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            log.warning("tracking: %s: %s: %s", backend, type(exc).__name__, exc)

    def report_to(self) -> str | list[str]:
        """The Trainer's ``report_to`` for the backends that started."""
        return list(self.backends) or "none"

    def log_params(self, params: dict[str, str]) -> None:
        if "mlflow" in self.backends:
            from mlflow.entities import Param
            from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

            items = [Param(k, v[:MAX_PARAM_VAL_LENGTH]) for k, v in sorted(params.items())]
            with self._warn("mlflow"):  # a changed value on a rerun is refused: keep going
                for i in range(0, len(items), MAX_PARAMS_TAGS_PER_BATCH):
                    self._mlflow.log_batch(self.ids["mlflow_run_id"],
                                           params=items[i:i + MAX_PARAMS_TAGS_PER_BATCH])
        if "wandb" in self.backends:
            with self._warn("wandb"):
                self._wandb.config.update(params, allow_val_change=True)
        if self._tb is not None:
            self._tb.add_text("params", json.dumps(params, indent=1, sort_keys=True))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        metrics = {metric_name(k): float(v) for k, v in metrics.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if not metrics:
            return
        if "mlflow" in self.backends:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            with self._warn("mlflow"):
                self._mlflow.log_batch(self.ids["mlflow_run_id"], metrics=[
                    Metric(k, v, now, step) for k, v in sorted(metrics.items())])
        if "wandb" in self.backends:
            with self._warn("wandb"):
                self._wandb.log({**metrics, "polya/step": step})
        if self._tb is not None:
            for key, value in metrics.items():
                self._tb.add_scalar(key, value, step)

    def log_artifact(self, path: str | Path) -> None:
        path = Path(path)
        if not path.is_file():
            return
        if "mlflow" in self.backends:
            with self._warn("mlflow"):
                self._mlflow.log_artifact(self.ids["mlflow_run_id"], str(path))
        if "wandb" in self.backends:
            with self._warn("wandb"):
                self._wandb.save(str(path), base_path=str(path.parent), policy="now")

    def on_progress(self, snap: dict[str, Any]) -> None:
        """A Reporter listener: the stage's figures at step = items done (throttled)."""
        metrics = {k: v for k, v in (snap.get("metrics") or {}).items()
                   if isinstance(v, (int, float))}
        last_time, last = self._last
        now = time.monotonic()
        final = snap.get("state") != "Running"
        if not metrics or metrics == last or (now - last_time < PROGRESS_INTERVAL and not final):
            return
        self._last = (now, metrics)
        self.log_metrics(metrics, int(snap.get("done") or 0))


def report_to() -> str | list[str]:
    """``report_to`` for the Trainer of the stage running in this process."""
    return _ACTIVE.report_to() if _ACTIVE is not None else "none"


def artifacts_of(ws: Workspace, arm: str, stage: str, outputs: dict[str, str]) -> list[Path]:
    """The files a stage's tracking run keeps: the card, the report, the metrics."""
    files = [ws.root / rel for rel in outputs.values() if rel.endswith((".json", ".md"))]
    files += [f.with_suffix(".html") for f in files if f.suffix == ".md"]
    if stage == "generate":
        files.append(ws.datastats(arm))
    return [f for f in files if f.is_file()]


@contextlib.contextmanager
def track(spec: PolyaRunSpec, arm: str, stage: str, workdir: RunDir,
          reporter: Any = None) -> Iterator[StageTracker]:
    """Open the (arm, stage) tracking runs around a stage; end them FINISHED or FAILED.

    Non-training stages log their progress figures as they change; every stage logs its
    final figures and artifacts with :func:`finish_outputs`.
    """
    global _ACTIVE
    tracker = StageTracker(spec, arm, stage, workdir)
    # Pods of an Indexed Job (a sharded or multi-node stage): index 0 tracks for the stage.
    if int(os.environ.get("JOB_COMPLETION_INDEX") or 0) == 0:
        tracker.start()
    if tracker.backends and reporter is not None and stage not in TRAINING_STAGES:
        reporter.listeners.append(tracker.on_progress)
    _ACTIVE = tracker
    status = "FAILED"
    try:
        yield tracker
        status = "FINISHED"
    except SystemExit:
        status = "KILLED"
        raise
    finally:
        _ACTIVE = None
        if reporter is not None and tracker.on_progress in reporter.listeners:
            reporter.listeners.remove(tracker.on_progress)
        tracker.close(status)


def finish_outputs(tracker: StageTracker, outputs: dict[str, str],
                   snapshot: dict[str, Any] | None) -> None:
    """Log a finished stage's final figures and its artifacts."""
    if not tracker.backends:
        return
    manifest = read_manifest(tracker.dir, verify=False) or {}
    figures = dict((snapshot or {}).get("metrics") or {})
    figures.update({k: v for k, v in (manifest.get("metrics") or {}).items()
                    if isinstance(v, (int, float))})
    step = int((snapshot or {}).get("done") or 0)
    tracker.log_metrics({f"final/{k}": v for k, v in figures.items()}, step)
    for path in artifacts_of(tracker.ws, tracker.arm, tracker.stage, outputs):
        tracker.log_artifact(path)


def tracked(run: Callable[..., dict[str, str]]) -> Callable[..., dict[str, str]]:
    """A stage's ``run(spec, arm, workdir, reporter)`` inside its tracking runs."""
    @functools.wraps(run)
    def wrapper(spec: PolyaRunSpec, arm: str, workdir: RunDir, reporter: Any,
                **kw: Any) -> dict[str, str]:
        stage = run.__module__.rsplit(".", 1)[-1]
        with track(spec, arm, stage, workdir, reporter) as tracker:
            outputs = run(spec, arm, workdir, reporter, **kw)
            finish_outputs(tracker, outputs, reporter.snapshot())
        return outputs

    return wrapper
