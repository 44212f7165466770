"""Progress flows one way: the trainer writes a small JSON file atomically and serves it.

* ``progress.json`` (path from ``POLYA_PROGRESS_FILE``): read by the local runner and, as the
  Pod's ``terminationMessagePath``, by the operator after the container exits (so it is kept
  under the 4 KiB termination-message limit).
* ``GET /progress`` and ``GET /metrics`` on ``POLYA_METRICS_PORT``: read by the operator and
  Prometheus while the stage runs. Pods never talk to the Kubernetes API.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .artifacts import atomic_write_text

TERMINATION_LIMIT = 4096
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
        ("acceptance_rate", "polyarun_generate_acceptance_ratio",
         "Share of (question, heuristic) pairs with an accepted sample."),
        ("accepted", "polyarun_generate_accepted", "Accepted samples so far."),
        ("accuracy", "polyarun_eval_running_accuracy", "Running accuracy of the evaluation."),
    ]
}
PASS_AT_K = Gauge("polyarun_eval_pass_at_k", "pass@k (0-1) per benchmark and checkpoint.",
                  ("arm", "benchmark", "checkpoint", "k"), registry=REGISTRY)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Reporter:
    """Progress of one (arm, stage): a file, Prometheus gauges and an HTTP endpoint.

    ``update`` is cheap to call often; the file is rewritten at most every
    ``min_interval`` seconds (and always on ``finish``).
    """

    def __init__(self, stage: str, arm: str = "polya", path: str | Path | None = None,
                 port: int | None = None, min_interval: float = 1.0, echo: bool = False):
        self.stage, self.arm = stage, arm
        env_path = os.environ.get("POLYA_PROGRESS_FILE")
        self.path = Path(path) if path else (Path(env_path) if env_path else None)
        self.min_interval = min_interval
        self.echo = echo
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
        if port:
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

    def finish(self, outputs: dict[str, str] | None = None, state: str = "Succeeded",
               message: str = "") -> None:
        with self._lock:
            self.state.update(state=state, message=message, outputs=outputs or {})
            if state == "Succeeded":
                self.state.update(progress=100.0, etaSeconds=0.0)
                if self.state["total"]:
                    self.state["done"] = self.state["total"]
        self._publish(force=True)

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


def read_progress(path: str | Path) -> dict[str, Any] | None:
    """Parse a progress file or termination message; None when absent or not ours."""
    try:
        data = json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) and "stage" in data else None
