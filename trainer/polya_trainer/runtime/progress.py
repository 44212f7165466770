"""Progress flows one way: the trainer writes small JSON files and serves its progress.

* ``progress.json`` (path from ``POLYA_PROGRESS_FILE``; in a pod a file in the ``progress``
  emptyDir): the live snapshot, replaced atomically (temp file + rename) at most every
  ``min_interval`` seconds. Read by the local runner.
* The **termination message** (path from ``POLYA_TERMINATION_MESSAGE_PATH``, which the
  operator sets to the container's ``terminationMessagePath``, ``/dev/termination-log``): a
  compact final state written once at exit (and on SIGTERM), **in place** (opened
  ``O_WRONLY|O_TRUNC``, never renamed over: the kubelet bind-mounts its own host file on that
  path, and ``rename(2)`` onto a mount point fails with EBUSY). At most 4096 bytes (the
  kubelet keeps only the last 4096, ``MaxContainerTerminationMessageLength``). The operator
  reads it from ``status.containerStatuses[].state.terminated.message`` (see
  ``polya_operator.planner.parse_progress``): ``stage``, ``arm``, ``state``, ``reason``,
  ``message``, ``progress``, ``done``/``total``, a few ``metrics`` and the ``outputs``.
* ``GET /progress`` and ``GET /metrics`` on ``POLYA_METRICS_PORT``: read by the operator and
  Prometheus while the stage runs. Pods never talk to the Kubernetes API.

In a multi-process stage (``accelerate launch``/torchrun set ``RANK``), only the main
process (rank 0) reports: the others write no file and bind no port.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from polya_trainer.runtime.artifacts import atomic_write_text

TERMINATION_LIMIT = 4096
TERMINATION_ENV = "POLYA_TERMINATION_MESSAGE_PATH"
TERMINATION_METRICS = 8  # figures kept in the termination message
REGISTRY = CollectorRegistry(auto_describe=True)
_L = ("arm", "stage")

PROGRESS = Gauge("polyarun_stage_progress_ratio", "Fraction of the stage done (0-1).", _L,
                 registry=REGISTRY)
ETA = Gauge("polyarun_stage_eta_seconds", "Estimated seconds until the stage ends.", _L,
            registry=REGISTRY)
ITEMS = Gauge("polyarun_stage_items", "Work items of the stage (steps, questions).",
              (*_L, "state"), registry=REGISTRY)
# Figures a stage may report: key in `Reporter.update(**metrics)` -> gauge.
FIGURES: dict[str, Gauge] = {
    key: Gauge(name, doc, _L, registry=REGISTRY) for key, name, doc in [
        ("loss", "polyarun_train_loss", "Latest training loss."),
        ("learning_rate", "polyarun_train_learning_rate", "Current learning rate."),
        ("epoch", "polyarun_train_epoch", "Current (fractional) epoch."),
        ("step", "polyarun_train_step", "Optimizer steps done."),
        ("reward_mean", "polyarun_train_reward_mean", "Mean GRPO reward of the last step."),
        ("reward_std", "polyarun_train_reward_std", "Std of the GRPO reward of the last step."),
        ("tokens_per_second", "polyarun_tokens_per_second", "Tokens processed per second."),
        ("no_signal_share", "polyarun_rl_no_signal_ratio",
         "Share of the last step's GRPO groups whose rewards were all equal (no signal)."),
        ("rl_truncation_rate", "polyarun_rl_truncation_ratio",
         "Share of the last step's completions cut off by maxCompletionLength."),
        ("truncated_zeroed", "polyarun_rl_truncated_zeroed_ratio",
         "Share of the last step's completions given reward 0 for being cut off."),
        ("no_answer_rate", "polyarun_rl_no_answer_ratio",
         "Share of the last step's completions with no extractable final answer."),
        ("completion_length", "polyarun_rl_completion_length_tokens",
         "Mean completion length of the last GRPO step."),
        ("entropy", "polyarun_rl_entropy", "Mean token entropy of the last GRPO step."),
        ("kl", "polyarun_rl_kl", "KL to the reference model (beta > 0 only)."),
        ("is_ratio_mean", "polyarun_rl_importance_ratio_mean",
         "Mean trainer/engine importance-sampling ratio of the last step (vLLM rollouts)."),
        ("is_ratio_min", "polyarun_rl_importance_ratio_min",
         "Smallest importance-sampling ratio of the last step."),
        ("is_ratio_max", "polyarun_rl_importance_ratio_max",
         "Largest importance-sampling ratio of the last step."),
        ("acceptance_rate", "polyarun_generate_acceptance_ratio",
         "Share of (question, heuristic) pairs with an accepted sample."),
        ("accepted", "polyarun_generate_accepted", "Accepted samples so far."),
        ("truncation_rate", "polyarun_generate_truncation_ratio",
         "Share of sampled candidates cut off by the length limit."),
        ("duplicates_removed", "polyarun_generate_duplicates_removed",
         "Duplicate solutions removed within questions."),
        ("vendi_mean", "polyarun_generate_vendi_mean",
         "Mean per-question Vendi score of the accepted solutions."),
        ("contaminated_questions", "polyarun_contaminated_questions",
         "Training questions sharing an n-gram with an evaluation benchmark."),
        ("accuracy", "polyarun_eval_running_accuracy", "Running accuracy of the evaluation."),
    ]
}
# Per heuristic (bounded: the catalog plus at most 32 custom heuristics).
HEURISTIC = Gauge("polyarun_generate_heuristic", "Per-heuristic figure of the generated data "
                  "(acceptance_rate, truncation_rate, kept).", ("arm", "heuristic", "figure"),
                  registry=REGISTRY)
PASS_AT_K = Gauge("polyarun_eval_pass_at_k", "pass@k (0-1) per benchmark and checkpoint.",
                  ("arm", "benchmark", "checkpoint", "k"), registry=REGISTRY)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def process_rank() -> int:
    """This process's rank: ``RANK`` (torchrun/accelerate, global), else ``LOCAL_RANK``,
    else 0 (a single process)."""
    for var in ("RANK", "LOCAL_RANK"):
        value = os.environ.get(var, "").strip()
        if value:
            try:
                return int(value)
            except ValueError:
                continue
    return 0


def is_main_process() -> bool:
    return process_rank() == 0


class Reporter:
    """Progress of one (arm, stage): a file, Prometheus gauges and an HTTP endpoint.

    ``update`` is cheap to call often; the file is rewritten at most every
    ``min_interval`` seconds (and always on ``finish``).
    """

    def __init__(self, stage: str, arm: str = "polya", path: str | Path | None = None,
                 port: int | None = None, min_interval: float = 1.0, echo: bool = False,
                 termination_path: str | Path | None = None, main: bool | None = None):
        self.stage, self.arm = stage, arm
        self.main = is_main_process() if main is None else main
        env_path = os.environ.get("POLYA_PROGRESS_FILE")
        term = termination_path or os.environ.get(TERMINATION_ENV) or None
        # Ranks other than 0 stay silent: no progress file, no termination message, no port.
        self.path = (Path(path) if path else (Path(env_path) if env_path else None)) \
            if self.main else None
        self.termination_path = Path(term) if term and self.main else None
        self.min_interval = min_interval
        self.echo = echo and self.main
        self.listeners: list[Any] = []  # callables(snapshot) e.g. progress bars
        self._lock = threading.Lock()
        self._last_write = 0.0
        self._t0 = time.monotonic()
        self.state: dict[str, Any] = {
            "stage": stage, "arm": arm, "state": "Running", "progress": 0.0, "done": 0,
            "total": None, "unit": "items", "etaSeconds": None, "metrics": {}, "outputs": {},
            "message": "", "startedAt": _now(), "updatedAt": _now(),
        }
        self._server: ThreadingHTTPServer | None = None
        port = port if port is not None else int(os.environ.get("POLYA_METRICS_PORT", "0") or 0)
        if port and self.main:
            self.serve(port)

    # ------------------------------------------------------------------ updates
    def start(self, total: float | None, unit: str = "items", message: str = "") -> None:
        self._t0 = time.monotonic()
        with self._lock:
            self.state.update(total=total, unit=unit, done=0, message=message)
        self._publish(force=True)

    def update(self, done: float | None = None, advance: float | None = None,
               total: float | None = None, message: str | None = None,
               **metrics: float) -> None:
        with self._lock:
            st = self.state
            if total is not None:
                st["total"] = total
            if advance is not None:
                st["done"] = (st["done"] or 0) + advance
            if done is not None:
                st["done"] = done
            if message is not None:
                st["message"] = message
            for key, value in metrics.items():
                if value is None or (isinstance(value, float) and not math.isfinite(value)):
                    continue
                st["metrics"][key] = round(float(value), 6)
            if st["total"]:
                frac = min(1.0, max(0.0, st["done"] / st["total"]))
                st["progress"] = round(100.0 * frac, 2)
                elapsed = time.monotonic() - self._t0
                st["etaSeconds"] = (round(elapsed * (1 - frac) / frac, 1) if frac > 0 else None)
            complete = bool(st["total"]) and st["done"] >= st["total"]
        self._publish(force=complete)  # the last update is never lost to throttling

    def eval_result(self, benchmark: str, checkpoint: str, k: int | str, value: float) -> None:
        PASS_AT_K.labels(self.arm, benchmark, checkpoint, str(k)).set(value)

    def heuristic_figures(self, heuristic: str, **figures: float) -> None:
        """Per-heuristic gauges of the generate stage (Prometheus only)."""
        for key, value in figures.items():
            if value is not None:
                HEURISTIC.labels(self.arm, heuristic, key).set(float(value))

    def finish(self, outputs: dict[str, str] | None = None, state: str = "Succeeded",
               message: str = "") -> None:
        with self._lock:
            self.state.update(state=state, message=message, outputs=outputs or {})
            if state == "Succeeded":
                self.state.update(progress=100.0, etaSeconds=0.0)
                if self.state["total"]:
                    self.state["done"] = self.state["total"]
        self._publish(force=True)

    def write_termination_message(self, state: str | None = None, reason: str = "",
                                  message: str | None = None) -> str | None:
        """Write the final state to the termination-message file in place; returns the text.

        ``state`` overrides the snapshot's state when the stage did not finish (e.g.
        ``Terminated`` on SIGTERM, ``Failed`` on an uncaught error). No-op without a path.
        """
        if self.termination_path is None:
            return None
        snap = self.snapshot()
        if state and snap["state"] == "Running":
            snap["state"] = state
        if message is not None and snap["state"] != "Succeeded":
            snap["message"] = message
        text = termination_message(snap, reason)
        write_in_place(self.termination_path, text)
        return text

    def install_sigterm(self, exit_code: int = 143) -> None:
        """On SIGTERM (Kubernetes stopping the pod), write the termination message and exit
        with 128 + SIGTERM. Training replaces this handler while it runs (it saves a
        checkpoint first and reports state Suspended) and restores it afterwards."""
        def handler(signum: int, frame: Any) -> None:
            self.write_termination_message("Terminated", reason="SIGTERM",
                                           message="stopped by SIGTERM")
            raise SystemExit(exit_code)

        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            signal.signal(signal.SIGTERM, handler)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self.state))

    # ------------------------------------------------------------------ outputs
    def _publish(self, force: bool = False) -> None:
        snap = self.snapshot()
        labels = (self.arm, self.stage)
        PROGRESS.labels(*labels).set(snap["progress"] / 100.0)
        if snap["etaSeconds"] is not None:
            ETA.labels(*labels).set(snap["etaSeconds"])
        ITEMS.labels(*labels, "done").set(snap["done"] or 0)
        if snap["total"]:
            ITEMS.labels(*labels, "total").set(snap["total"])
        for key, value in snap["metrics"].items():
            if key in FIGURES:
                FIGURES[key].labels(*labels).set(value)
        for listener in self.listeners:
            listener(snap)
        now = time.monotonic()
        if self.path and (force or now - self._last_write >= self.min_interval):
            self._last_write = now
            snap["updatedAt"] = _now()
            atomic_write_text(self.path, compact(snap))
        if self.echo and force:
            print(json.dumps(snap), flush=True)

    def serve(self, port: int, host: str = "0.0.0.0") -> int:
        """Serve /progress, /metrics and /healthz in a daemon thread; returns the port."""
        reporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/metrics"):
                    body, ctype = generate_latest(REGISTRY), CONTENT_TYPE_LATEST
                elif self.path.startswith("/progress"):
                    body, ctype = json.dumps(reporter.snapshot()).encode(), "application/json"
                elif self.path.startswith("/healthz"):
                    body, ctype = b"ok", "text/plain"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self._server.server_address[1]

    def close(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def compact(snap: dict[str, Any], limit: int = TERMINATION_LIMIT) -> str:
    """JSON of a snapshot that fits the termination-message limit (drops detail first)."""
    text = json.dumps(snap, separators=(",", ":"))
    if len(text.encode()) <= limit:
        return text
    snap = dict(snap, message=str(snap.get("message", ""))[:512])
    metrics = dict(snap.get("metrics", {}))
    while len(json.dumps(snap, separators=(",", ":")).encode()) > limit and metrics:
        metrics.pop(sorted(metrics)[-1])
        snap["metrics"] = metrics
    text = json.dumps(snap, separators=(",", ":"))
    if len(text.encode()) > limit:
        snap["outputs"] = {}
        text = json.dumps(snap, separators=(",", ":"))
    return text


def termination_message(snap: dict[str, Any], reason: str = "",
                        limit: int = TERMINATION_LIMIT) -> str:
    """The compact final state the operator reads from ``terminated.message``."""
    metrics = snap.get("metrics") or {}
    keep = [k for k in FIGURES if k in metrics] + sorted(k for k in metrics if k not in FIGURES)
    doc = {"stage": snap.get("stage"), "arm": snap.get("arm"), "state": snap.get("state"),
           "reason": reason or snap.get("state") or "",
           "message": str(snap.get("message") or "")[:512],
           "progress": snap.get("progress"), "done": snap.get("done"),
           "total": snap.get("total"), "unit": snap.get("unit"),
           "metrics": {k: metrics[k] for k in keep[:TERMINATION_METRICS]},
           "outputs": snap.get("outputs") or {}, "finishedAt": _now()}
    return compact(doc, limit)


def write_in_place(path: str | Path, text: str) -> None:
    """Overwrite a file without replacing it (its inode, and so a bind mount on it, stays):
    ``open(O_WRONLY|O_TRUNC)``, created when absent (outside a pod)."""
    data = text.encode()
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            view = view[n:]
        with contextlib.suppress(OSError):  # e.g. a file system without fsync
            os.fsync(fd)
    finally:
        os.close(fd)


def read_progress(path: str | Path) -> dict[str, Any] | None:
    """Parse a progress file or termination message; None when absent or not ours."""
    try:
        data = json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) and "stage" in data else None
