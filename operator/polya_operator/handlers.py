"""Thin kopf handlers: read (kopf's indexes), plan (the engine's planner), apply (executor).

* kopf **indexes** hold the PolyaRuns and their Jobs and pods, fed by one list + watch per
  kind; Jobs and pods are selected server-side by label (``settings.watching.
  label_selectors``), so unrelated objects of a busy cluster never reach the operator. kopf
  blocks handlers until every index has done its first listing, so after a restart the
  planner sees every existing Job before it decides anything.
* raw **event** handlers put the run concerned on **one work queue** (controller-runtime's
  semantics: a key is queued once, and an event arriving while it is being reconciled queues
  it once more). Raw event handlers need no finalizer and no kopf bookkeeping annotations.
* one **resync timer** reads live progress from running pods (``GET <podIP>:9400/progress``;
  pods never write to the API), queues runs with a deadline or TTL due, runs whose last
  reconcile failed and runs whose progress moved, and checks the PolyaRun watch is alive
  (watchdog.py).

A reconcile writes only what changed: children to create or delete, one status merge patch
when the status differs from the last one, and the Events of the transitions.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf
from polya_trainer import spec as s
from polya_trainer.engine import planner as p

from . import executor as x
from . import kube, metrics, sweep, watchdog, webhook
from . import resources as r

log = logging.getLogger("polya_operator")
CONTROLLER = "polyarun"
Key = tuple[str, str]
ProgressFetcher = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


@dataclass
class Config:
    """Operator settings (environment variables in brackets)."""

    image: str = field(default_factory=r.default_image)  # POLYA_TRAINER_IMAGE
    resync: float = field(default_factory=lambda: _env_float("POLYA_RESYNC_SECONDS", 30.0))
    metrics_port: int = field(default_factory=lambda: int(
        os.environ.get("POLYA_OPERATOR_METRICS_PORT", "8080")))  # 0 disables the server
    webhook: bool = field(default_factory=lambda: os.environ.get("POLYA_WEBHOOK") == "1")
    webhook_port: int = field(default_factory=lambda: int(
        os.environ.get("POLYA_WEBHOOK_PORT", "9443")))
    webhook_addr: str | None = None  # listen address (None: all interfaces)
    fetch_progress: ProgressFetcher | None = None  # tests point it at 127.0.0.1
    # Stalled-watch check (watchdog.py) every N seconds, 0 disables [POLYA_WATCH_CHECK_SECONDS]
    watch_check: float = field(default_factory=lambda: _env_float(
        "POLYA_WATCH_CHECK_SECONDS", 60.0))
    namespaces: list[str] | None = None  # watched namespaces (None or []: cluster-wide)
    workers: int = 16  # reconciles at once (of different runs)

    def __post_init__(self) -> None:
        r.default_resources()  # a bad POLYA_DEFAULT_RESOURCES stops the operator at start


class Operator:
    """Handlers and in-memory state of one operator instance (one per kopf registry)."""

    def __init__(self, config: Config | None = None):
        self.config = config or Config()
        self.idx: dict[str, Any] = {}
        self.written: dict[Key, tuple[str, s.PolyaRunStatus]] = {}  # last status, by uid
        self.specs: dict[Key, tuple[str, Any, Any]] = {}  # (uid, generation, parsed)
        self.live: dict[str, dict[str, Any]] = {}  # job name -> live progress
        self.known: dict[str, float] = {}  # job name -> when created (monotonic)
        self.retry: set[Key] = set()  # runs whose last reconcile failed
        self.queue: asyncio.Queue[Key] | None = None
        self.queued: set[Key] = set()
        self.busy: set[Key] = set()
        self.dirty: set[Key] = set()
        self.health = metrics.Health(self.config.resync)
        self.watch_check = watchdog.WatchCheck(self.config.watch_check)
        self._tasks: list[asyncio.Task[Any]] = []
        self._runner: Any = None

    def register(self, registry: kopf.OperatorRegistry) -> None:
        g, v, pl = s.GROUP, s.VERSION, s.PLURAL
        ours = {p.LABEL_RUN: kopf.PRESENT}
        kopf.on.login(registry=registry)(self.login)
        kopf.on.startup(registry=registry)(self.startup)
        kopf.on.cleanup(registry=registry)(self.cleanup)
        kopf.index(g, v, pl, registry=registry, id="runs")(self.index_run)
        kopf.index("batch", "v1", "jobs", labels=ours, registry=registry,
                   id="jobs")(self.index_job)
        kopf.index("", "v1", "pods", labels=ours, registry=registry, id="pods")(self.index_pod)
        kopf.on.event(g, v, pl, registry=registry, id="run-event")(self.on_run)
        for group, plural in (("batch", "jobs"), ("", "pods")):
            kopf.on.event(group, "v1", plural, labels=ours, registry=registry,
                          id=f"{plural}-event")(self.on_child)
        if self.config.webhook:
            kopf.on.validate(g, v, pl, registry=registry, id="validate-spec",
                             operations=["CREATE", "UPDATE"], ignore_failures=True,
                             )(self.validate)

    # ------------------------------------------------------------------ kopf plumbing
    @staticmethod
    def login(**kwargs: Any) -> Any:
        if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
            return kopf.login_with_service_account(**kwargs)
        return kopf.login_with_kubeconfig(**kwargs)

    async def startup(self, settings: kopf.OperatorSettings, **kwargs: Any) -> None:
        settings.posting.enabled = False  # we post our own Events, only for transitions
        settings.scanning.disabled = True  # namespaces come from the command line
        settings.watching.server_timeout = 600
        settings.watching.client_timeout = 660
        for key in (("batch/v1", "jobs"), ("v1", "pods")):  # server-side filtering
            settings.watching.label_selectors[key] = p.LABEL_RUN
        if self.config.webhook:
            webhook.configure(settings, {**os.environ,
                                         "POLYA_WEBHOOK_PORT": str(self.config.webhook_port)},
                              addr=self.config.webhook_addr)
        self._remember(kwargs)
        metrics.build_info()
        if self.config.metrics_port:
            self._runner = await metrics.serve(self.config.metrics_port, self.health)
        self.queue = asyncio.Queue()
        self._tasks = [asyncio.create_task(self._worker())
                       for _ in range(self.config.workers)]
        self._tasks.append(asyncio.create_task(self._resync_loop()))

    async def cleanup(self, **_: Any) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        await kube.close()

    def _remember(self, kwargs: dict[str, Any]) -> None:
        self.idx.update({k: kwargs[k] for k in ("runs", "jobs", "pods") if k in kwargs})

    # ------------------------------------------------------------------ indexes and events
    # Async on purpose: kopf runs sync handlers in its thread pool (a thread hop per event).
    @staticmethod
    async def index_run(namespace: str, name: str, body: kopf.Body, **_: Any) -> Any:
        meta = body.get("metadata") or {}
        return {(namespace, name): {
            "metadata": {"name": name, "namespace": namespace, "uid": meta.get("uid"),
                         "generation": meta.get("generation"),
                         "resourceVersion": meta.get("resourceVersion"),
                         "deletionTimestamp": meta.get("deletionTimestamp")},
            "spec": dict(body.get("spec") or {}), "status": dict(body.get("status") or {})}}

    @staticmethod
    async def index_job(namespace: str, labels: dict[str, str], body: kopf.Body,
                        **_: Any) -> Any:
        return {(namespace, labels[p.LABEL_RUN]): x.compact_job(body)}

    @staticmethod
    async def index_pod(namespace: str, labels: dict[str, str], body: kopf.Body,
                        **_: Any) -> Any:
        job = x.job_of_pod(labels)
        return {(namespace, job): x.compact_pod(body)} if job else {}

    async def on_run(self, type: str | None, body: kopf.Body, namespace: str, name: str,
                     **kwargs: Any) -> None:
        self._remember(kwargs)
        metrics.observed_event()
        if type == "DELETED":
            await self._deleted(namespace, name, (body.get("metadata") or {}).get("uid"))
        else:
            self.enqueue((namespace, name))

    async def on_child(self, namespace: str, labels: dict[str, str], **kwargs: Any) -> None:
        self._remember(kwargs)
        metrics.observed_event()
        self.enqueue((namespace, labels[p.LABEL_RUN]))

    @staticmethod
    async def validate(spec: dict[str, Any], name: str | None = None, **_: Any) -> None:
        errors = [("metadata.name", e)] if name and (e := p.name_error(name)) else []
        try:
            s.parse_spec(dict(spec))
        except s.SpecError as exc:
            errors += exc.errors
        if errors:
            raise kopf.AdmissionError(str(s.SpecError(errors)), code=422)

    # ------------------------------------------------------------------ the work queue
    def enqueue(self, key: Key) -> None:
        """Queue a reconcile; a key queued already is not queued twice, and one being
        reconciled is queued once more when that reconcile ends."""
        if key in self.busy:
            self.dirty.add(key)
        elif key not in self.queued and self.queue is not None:
            self.queued.add(key)
            self.queue.put_nowait(key)

    async def _worker(self) -> None:
        assert self.queue is not None
        while True:
            key = await self.queue.get()
            self.queued.discard(key)
            self.busy.add(key)
            try:
                await self.reconcile(*key)
            finally:
                self.busy.discard(key)
                if key in self.dirty:
                    self.dirty.discard(key)
                    self.enqueue(key)

    async def reconcile(self, namespace: str, name: str) -> None:
        start, result = time.monotonic(), "success"
        self.retry.discard((namespace, name))
        try:
            await self._reconcile(namespace, name)
        except kube.OwnedByAnother as exc:  # a deleted namesake's child: wait for the GC
            result = "requeue"
            self.retry.add((namespace, name))
            log.info("%s/%s waits for a deleted run's children to go: %s", namespace, name, exc)
        except Exception:
            result = "error"
            self.retry.add((namespace, name))
            metrics.RECONCILE_ERRORS.labels(CONTROLLER).inc()
            log.exception("reconcile of %s/%s failed; retried on the next resync",
                          namespace, name)
        metrics.RECONCILE_TOTAL.labels(CONTROLLER, result).inc()
        metrics.RECONCILE_TIME.labels(CONTROLLER).observe(time.monotonic() - start)

    # ------------------------------------------------------------------ reconcile
    def _run(self, key: Key) -> dict[str, Any] | None:
        runs = self.idx.get("runs")
        return next(iter(runs[key]), None) if runs is not None and key in runs else None

    def _status(self, key: Key, run: dict[str, Any]) -> s.PolyaRunStatus:
        """Our own last write wins over a watch event that has not arrived yet."""
        uid, status = self.written.get(key, ("", None))
        if status is not None and uid == run["metadata"].get("uid"):
            return status
        return p.as_status(run.get("status"))

    def _spec(self, key: Key, run: dict[str, Any]) -> Any:
        meta = run["metadata"]
        hit = self.specs.get(key)
        if hit is None or hit[:2] != (meta.get("uid"), meta.get("generation")):
            hit = self.specs[key] = (meta.get("uid"), meta.get("generation"),
                                     x.parse(run.get("spec")))
        return hit[2]

    def _jobs(self, key: Key) -> list[dict[str, Any]]:
        jobs = self.idx.get("jobs")
        return list(jobs[key]) if jobs is not None and key in jobs else []

    def _children(self, key: Key, uid: str | None = None) -> list[p.Attempt]:
        """The run's Jobs (with their pods); a deleted namesake's lingering children (other
        owner uid) are not this run's."""
        jobs, pods = self.idx.get("jobs"), self.idx.get("pods")
        out = []
        for job in jobs[key] if jobs is not None and key in jobs else []:
            jm = job["metadata"]
            if uid and jm.get("owner") not in (None, uid):
                continue
            pk = (key[0], jm["name"])
            mine = [pod for pod in (pods[pk] if pods is not None and pk in pods else [])
                    if pod["metadata"].get("owner") in (None, jm.get("uid"))]
            out.append(x.observe_job(job, mine))
        return out

    async def _reconcile(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        run = self._run(key)
        if run is None or run["metadata"].get("deletionTimestamp"):
            return
        if sweep.is_parent(run.get("spec")):  # a sweep's parent: its children run (sweep.py)
            return
        uid = run["metadata"].get("uid")
        old = self._status(key, run)
        parsed = self._spec(key, run)
        horizon = time.monotonic() - 120.0
        plan = p.plan({**run, "status": old}, self._children(key, uid), datetime.now(UTC),
                      policy=x.policy(parsed) if isinstance(parsed, s.PolyaRunSpec)
                      else p.Policy(), live=self.live, parsed=parsed,
                      known={n for n, t in self.known.items() if t > horizon})
        changed = plan.status != old
        if not changed and not plan.actions:
            return
        for a in plan.of(p.StartAttempt):
            self.known[a.name] = time.monotonic()
        spec = parsed if isinstance(parsed, s.PolyaRunSpec) else None  # None: events only
        created = await x.apply(kube.client(), run, plan, spec, self.config.image, changed)
        for a in plan.of(p.StartAttempt):
            if a.name in created:
                metrics.JOBS_CREATED.labels(a.stage).inc()
        for a in plan.of(p.StopAttempt):
            self.live.pop(a.name, None)
        if changed:
            self.written[key] = (uid or "", plan.status)
        metrics.observe_plan(namespace, name, plan)

    async def _deleted(self, namespace: str, name: str, uid: str | None) -> None:
        """A deleted run: delete its active Jobs now (garbage collection would, later)."""
        key = (namespace, name)
        jobs = self._children(key, uid)
        api = kube.client()
        await asyncio.gather(*(api.delete("batch/v1", "jobs", namespace, j.name)
                               for j in jobs if j.phase in p.ACTIVE))
        for j in jobs:
            self.live.pop(j.name, None)
            self.known.pop(j.name, None)
        _, status = self.written.pop(key, ("", None))
        metrics.forget_run(namespace, name, [(st.arm, st.name) for st in
                                             (status.stages if status else [])])
        self.specs.pop(key, None)

    # ------------------------------------------------------------------ resync
    async def _fetch(self, pod: dict[str, Any]) -> dict[str, Any] | None:
        if self.config.fetch_progress is not None:
            return await self.config.fetch_progress(pod)
        return await x.http_progress(pod)

    async def resync_once(self) -> None:
        """Read live progress; queue the runs that moved, are due or failed last time."""
        runs, pods = self.idx.get("runs"), self.idx.get("pods")
        if runs is None:
            return
        self.health.ready = True
        now = datetime.now(UTC)
        states: dict[str, int] = {}
        for key in list(runs.keys()):
            run = self._run(key)
            if run is None:
                continue
            status = self._status(key, run)
            state = p.run_state(status)
            states[state] = states.get(state, 0) + 1
            wake = p.next_wakeup(run.get("spec") or {}, status, now)
            due = key in self.retry or (wake is not None and wake <= 0)
            if state in ("Succeeded", "Failed") and not due:
                continue
            jobs = {j["metadata"]["name"]: j for j in self._jobs(key)}
            for st in status.stages:
                if st.state != "Running" or not st.job_name or pods is None or \
                        (key[0], st.job_name) not in pods:
                    continue
                job_pods = pods[(key[0], st.job_name)]
                fetched = {}
                for pod in job_pods:
                    if (pod.get("status") or {}).get("phase") == "Running":
                        data = await self._fetch(pod)
                        if data is not None:
                            fetched[x.pod_index(pod) or 0] = data
                job = jobs.get(st.job_name)
                data = (x.index_progress(job, list(job_pods), fetched)  # summed over indices
                        if job is not None and x.completions(job) > 1
                        else next(iter(fetched.values()), None))
                if data is not None and data != self.live.get(st.job_name):
                    self.live[st.job_name] = data
                    due = True
            if due:
                self.enqueue(key)
        metrics.set_states(states)
        horizon = time.monotonic() - 600
        self.known = {k: t for k, t in self.known.items() if t > horizon}

    async def check_watch(self) -> None:
        """Compare listed PolyaRun versions with kopf's index (see watchdog.py)."""
        runs = self.idx.get("runs")
        if runs is None:
            return
        items = await kube.client().list_runs(self.config.namespaces or [None])
        indexed = {k: v["metadata"].get("resourceVersion")
                   for k in list(runs.keys()) for v in runs[k]}
        stalled = self.watch_check.compare(watchdog.listed_versions(items), indexed)
        if stalled and not self.health.watch_stalled:
            log.error("the PolyaRun watch looks stalled (%d object(s) behind the API for "
                      "%.0f s): reporting unhealthy", len(self.watch_check.lagging),
                      self.watch_check.interval)
        self.health.watch_stalled = stalled
        metrics.WATCH_STALLED.set(1.0 if stalled else 0.0)

    async def _resync_loop(self) -> None:
        while True:
            self.health.tick()
            try:
                await self.resync_once()
            except Exception:
                log.exception("resync failed")
            if self.config.watch_check > 0 and self.watch_check.due():
                try:
                    await self.check_watch()
                except Exception as exc:  # the API is unreachable: no verdict this time
                    log.warning("watch check failed: %s", exc)
            await asyncio.sleep(self.config.resync)


def make_registry(config: Config | None = None) -> tuple[kopf.OperatorRegistry, Operator]:
    """A fresh registry with the operator's handlers (one per process or per test)."""
    registry = kopf.OperatorRegistry()
    op = Operator(config)
    op.register(registry)
    sweep.register(registry, op.config.namespaces)  # sweep parents (sweep.py)
    return registry, op
