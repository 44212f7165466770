"""Operator metrics (prometheus_client), in one place, plus the /metrics, /healthz, /readyz
server. Names follow controller-runtime where it has one (reconcile totals, errors, time).
"""

from __future__ import annotations

import contextlib
import platform
import time
from typing import Any

import kopf
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

REGISTRY = CollectorRegistry(auto_describe=True)
STATES = ("Pending", "Running", "Succeeded", "Failed", "Suspended")
_STAGE_BUCKETS = (30, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800)

RECONCILE_TOTAL = Counter("polyarun_reconcile_total", "Reconciliations by result.",
                          ("controller", "result"), registry=REGISTRY)
RECONCILE_ERRORS = Counter("polyarun_reconcile_errors_total", "Reconciliations that failed.",
                           ("controller",), registry=REGISTRY)
RECONCILE_TIME = Histogram("polyarun_reconcile_time_seconds", "Time of one reconciliation.",
                           ("controller",), registry=REGISTRY)
RUNS = Gauge("polyarun_runs", "PolyaRuns by state.", ("state",), registry=REGISTRY)
RUNS_FINISHED = Counter("polyarun_runs_finished_total", "PolyaRuns finished, by result.",
                        ("result",), registry=REGISTRY)
STAGE_DURATION = Histogram("polyarun_stage_duration_seconds",
                           "Duration of a stage, first attempt to finish.", ("stage", "result"),
                           buckets=_STAGE_BUCKETS, registry=REGISTRY)
STAGE_RETRIES = Counter("polyarun_stage_retries_total", "Stage attempts retried, by reason.",
                        ("stage", "reason"), registry=REGISTRY)
STAGE_PREEMPTIONS = Counter("polyarun_stage_preemptions_total",
                            "Stage pods disrupted (not counted as failures).", ("stage",),
                            registry=REGISTRY)
RUN_PROGRESS = Gauge("polyarun_run_progress_ratio",
                     "Progress of a run over its arms and stages, status.progress (0-1).",
                     ("namespace", "name"), registry=REGISTRY)
# Not polyarun_stage_progress_ratio: the trainer pods export that one (runtime/progress.py).
RUN_STAGE_PROGRESS = Gauge("polyarun_run_stage_progress_ratio",
                           "Progress of one stage of a run, status.stages[].progress (0-1).",
                           ("namespace", "name", "arm", "stage"), registry=REGISTRY)
TIME_TO_RUNNING = Histogram("polyarun_time_to_running_seconds",
                            "From Job creation to its pod running.", ("stage",),
                            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600),
                            registry=REGISTRY)
JOBS_CREATED = Counter("polyarun_jobs_created_total", "Jobs created, by stage.", ("stage",),
                       registry=REGISTRY)
BUILD_INFO = Gauge("polyarun_build_info", "Build information (always 1).",
                   ("version", "kopf_version", "python_version"), registry=REGISTRY)
WATCH_STALLED = Gauge("polyarun_watch_stalled", "1 while the PolyaRun watch looks stalled "
                      "(listed versions not reaching the index).", registry=REGISTRY)
WATCH_LAST_EVENT = Gauge("polyarun_watch_last_event_timestamp_seconds",
                         "Unix time of the last watch event handled.", registry=REGISTRY)


def build_info() -> None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("polyarun")
    except PackageNotFoundError:
        ours = "dev"
    BUILD_INFO.labels(ours, getattr(kopf, "__version__", None) or version("kopf"),
                      platform.python_version()).set(1)


def observed_event() -> None:
    WATCH_LAST_EVENT.set(time.time())


class Health:
    """Readiness: the watches have listed everything once. Liveness: the event loop answers,
    the resync loop has ticked recently (it runs every ``resync`` seconds) and the PolyaRun
    watch is not stalled (see watchdog.py). Not kopf's ``--liveness``: one path, no readiness,
    200 unless a probe raises, cached 10 s (kopf/_core/engines/probing.py, ``health_reporter``)."""

    def __init__(self, resync: float):
        self.resync = resync
        self.ready = False
        self.watch_stalled = False
        self.last_tick = time.monotonic()

    def tick(self) -> None:
        self.last_tick = time.monotonic()

    def alive(self) -> bool:
        return time.monotonic() - self.last_tick < max(60.0, 5 * self.resync) \
            and not self.watch_stalled


async def serve(port: int, health: Health, host: str = "0.0.0.0") -> web.AppRunner:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(REGISTRY),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok" if health.alive() else "stalled",
                            status=200 if health.alive() else 503)

    async def readyz(_: web.Request) -> web.Response:
        return web.Response(text="ok" if health.ready else "starting",
                            status=200 if health.ready else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def forget_run(namespace: str, name: str, arms_stages: list[tuple[str, str]]) -> None:
    with contextlib.suppress(KeyError):
        RUN_PROGRESS.remove(namespace, name)
    for arm, stage in arms_stages:
        with contextlib.suppress(KeyError):
            RUN_STAGE_PROGRESS.remove(namespace, name, arm, stage)


def set_states(counts: dict[str, int]) -> None:
    for state in STATES:
        RUNS.labels(state).set(counts.get(state, 0))




def observe_plan(namespace: str, name: str, plan: Any) -> None:
    """Metrics of one reconcile's transitions and events (``plan``: a planner Plan)."""
    stages = {(x.arm, x.name): x for x in plan.status.stages}
    for t in plan.transitions:
        if t.new in ("Succeeded", "Failed") and t.seconds is not None:
            STAGE_DURATION.labels(t.stage, t.new).observe(t.seconds)
        elif t.new == "Running" and t.seconds is not None:
            TIME_TO_RUNNING.labels(t.stage).observe(t.seconds)
    for ev in plan.actions:
        reason = getattr(ev, "reason", None)
        if reason == "StageRetrying" and ev.stage:
            why = getattr(stages.get((ev.arm, ev.stage)), "reason", None) or "Unknown"
            STAGE_RETRIES.labels(ev.stage, why).inc()
        elif reason == "Preempted" and ev.stage:
            STAGE_PREEMPTIONS.labels(ev.stage).inc()
        elif reason in ("RunSucceeded", "RunFailed"):
            RUNS_FINISHED.labels(reason[3:]).inc()
    done = any(c.type in ("Succeeded", "Failed") and c.status == "True"
               for c in plan.status.conditions)
    if done:
        forget_run(namespace, name, list(stages))
        return
    RUN_PROGRESS.labels(namespace, name).set(float(plan.status.progress) / 100.0)
    for (arm, stage), st in stages.items():
        RUN_STAGE_PROGRESS.labels(namespace, name, arm, stage).set(float(st.progress) / 100.0)
