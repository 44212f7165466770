"""Thin kopf handlers: read (kopf's indexes), plan (the engine's planner), apply (executor).

kopf **indexes** hold the PolyaRuns and their Jobs and pods (Jobs and pods selected
server-side by label; kopf runs no handler before every index has listed once). Raw **event**
handlers (no finalizer, no annotations) put the run on **one work queue** (client-go's
workqueue semantics; a failed reconcile comes back a resync interval later). One **resync
timer** reads live progress from running pods (``GET <podIP>:9400/progress``), queues the runs
that moved or are due (deadline, TTL) and checks the PolyaRun watch (watchdog.py). A reconcile
writes only what changed: children, one status merge patch, the Events of the transitions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Callable
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
RUN_META = ("uid", "generation", "resourceVersion", "deletionTimestamp",  # what a run keeps
            "labels", "ownerReferences")  # sweeps: labels go to the children; owner checks


def _env(name: str, default: str, cast: Callable[[str], Any] = float) -> Any:
    """A field read from the environment when a Config is made (a bad value stops the start)."""
    return field(default_factory=lambda: cast(os.environ.get(name, default)))


@dataclass
class Config:
    """Operator settings and the environment variables they default to."""

    image: str = field(default_factory=r.default_image)  # POLYA_TRAINER_IMAGE
    resync: float = _env("POLYA_RESYNC_SECONDS", "30")
    metrics_port: int = _env("POLYA_OPERATOR_METRICS_PORT", "8080", int)  # 0: no server
    webhook: bool = _env("POLYA_WEBHOOK", "0", lambda v: v == "1")
    webhook_port: int = _env("POLYA_WEBHOOK_PORT", "9443", int)
    webhook_addr: str | None = None  # listen address (None: all interfaces)
    watch_check: float = _env("POLYA_WATCH_CHECK_SECONDS", "60")  # watchdog.py; 0: off
    namespaces: list[str] | None = None  # watched namespaces (None or []: cluster-wide)
    workers: int = 16  # reconciles at once (of different runs)
    # Live /progress polls per resync: all at once (32 in flight), 1 s each, 10 s in all.
    progress_timeout: float = 1.0
    progress_budget: float = _env("POLYA_PROGRESS_BUDGET_SECONDS", "10")

    def __post_init__(self) -> None:
        r.default_resources()  # a bad POLYA_DEFAULT_RESOURCES stops the operator at start


class Operator:
    """Handlers and in-memory state of one operator instance (one per kopf registry)."""

    def __init__(self, config: Config | None = None):
        self.config = config or Config()
        self.idx: dict[str, Any] = {}
        self.written: dict[Key, tuple[str, s.PolyaRunStatus]] = {}  # last status, by uid
        self.live: dict[str, dict[str, Any]] = {}  # job name -> live progress
        self.known: dict[str, float] = {}  # job name -> when created (monotonic)
        self.refusals: dict[str, str] = {}  # Job uid -> its newest FailedCreate message
        self.queue: asyncio.Queue[Key] = asyncio.Queue()  # binds to a loop on first use
        self.dirty: set[Key] = set()  # to reconcile (queued, or waiting for a busy one)
        self.busy: set[Key] = set()  # being reconciled
        self.health = metrics.Health(self.config.resync)
        # kopf calls no event handler before every index has listed once (kopf/_core/reactor/
        # processing.py, process_resource_event: operator_indexed.wait_for(True)); our first
        # event handler call is that signal (readiness; see _check_ready).
        self.indexed = False
        self.watch_check = watchdog.WatchCheck(self.config.watch_check)
        self._tasks: list[asyncio.Task[Any]] = []
        self._runner: Any = None

    def register(self, registry: kopf.OperatorRegistry) -> None:
        g, v, pl = s.GROUP, s.VERSION, s.PLURAL
        ours = {p.LABEL_RUN: kopf.PRESENT}
        kopf.on.login(registry=registry)(kopf.login_with_service_account
                                         if kube.in_cluster() else kopf.login_with_kubeconfig)
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
        self.idx = {k: kwargs[k] for k in ("runs", "jobs", "pods")}  # kopf's live indexes
        metrics.build_info()
        if self.config.metrics_port:
            self._runner = await metrics.serve(self.config.metrics_port, self.health)
        coros = [self._resync_loop(), *(self._worker() for _ in range(self.config.workers))]
        self._tasks = [asyncio.create_task(coro) for coro in coros]

    async def cleanup(self, **_: Any) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        await kube.close()

    # Async on purpose: kopf runs sync handlers in its thread pool (a thread hop per event).
    @staticmethod
    async def index_run(namespace: str, name: str, body: kopf.Body, **_: Any) -> Any:
        meta = {k: body.metadata.get(k) for k in RUN_META}
        return {(namespace, name): {"metadata": {**meta, "name": name, "namespace": namespace},
                                    "spec": dict(body.spec), "status": dict(body.status)}}

    @staticmethod
    async def index_job(namespace: str, labels: dict[str, str], body: kopf.Body, **_: Any) -> Any:
        return {(namespace, labels[p.LABEL_RUN]): x.compact_job(body)}

    @staticmethod
    async def index_pod(namespace: str, labels: dict[str, str], body: kopf.Body, **_: Any) -> Any:
        job = x.job_of_pod(labels)
        return {(namespace, job): x.compact_pod(body)} if job else {}

    async def on_run(self, type: str | None, body: kopf.Body, namespace: str, name: str,
                     **_: Any) -> None:
        metrics.observed_event()
        self.indexed = self.health.ready = True
        if type == "DELETED":
            await self._deleted(namespace, name, (body.get("metadata") or {}).get("uid"))
        else:
            self.enqueue((namespace, name))

    async def on_child(self, namespace: str, labels: dict[str, str], **_: Any) -> None:
        metrics.observed_event()
        self.indexed = self.health.ready = True
        self.enqueue((namespace, labels[p.LABEL_RUN]))

    @staticmethod
    async def validate(spec: dict[str, Any], name: str | None = None, **_: Any) -> None:
        errors = [("metadata.name", e)] if name and (e := p.name_error(name)) else []
        if isinstance(parsed := p.parse(dict(spec)), s.SpecError):
            errors += parsed.errors
        if errors:
            raise kopf.AdmissionError(str(s.SpecError(errors)), code=422)

    def enqueue(self, key: Key) -> None:
        """client-go's workqueue Add: a dirty key is not queued twice, and one being reconciled
        goes back on the queue when that reconcile ends (never two reconciles of a run).
        Not kopf's: it serializes per watched object (kopf/_core/reactor/queueing.py, ``watcher``
        keys a worker by (resource, uid)), so a run's, its Jobs' and its pods' events overlap."""
        if key not in self.dirty:
            self.dirty.add(key)
            if key not in self.busy:
                self.queue.put_nowait(key)

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            self.dirty.discard(key)
            self.busy.add(key)
            try:
                await self.reconcile(*key)
            finally:
                self.busy.discard(key)
                if key in self.dirty:
                    self.queue.put_nowait(key)

    async def reconcile(self, namespace: str, name: str) -> None:
        key, result = (namespace, name), "success"
        try:
            with metrics.RECONCILE_TIME.labels(CONTROLLER).time():
                await self._reconcile(namespace, name)
        except kube.OwnedByAnother as exc:  # a deleted namesake's child: wait for the GC
            result = "requeue"
            log.info("%s/%s waits for a deleted run's children to go: %s", namespace, name, exc)
        except Exception:
            result = "error"
            metrics.RECONCILE_ERRORS.labels(CONTROLLER).inc()
            log.exception("reconcile of %s/%s failed; retried after a resync interval",
                          namespace, name)
        if result != "success":  # retried a resync interval later (client-go's AddAfter)
            asyncio.get_running_loop().call_later(self.config.resync, self.enqueue, key)
        metrics.RECONCILE_TOTAL.labels(CONTROLLER, result).inc()

    def _items(self, index: str, key: Key) -> list[dict[str, Any]]:
        return list(self.idx[index].get(key, ()))

    def _run(self, key: Key) -> dict[str, Any] | None:
        return next(iter(self._items("runs", key)), None)

    def _status(self, key: Key, run: dict[str, Any]) -> s.PolyaRunStatus:
        """Our own last write wins over a watch event that has not arrived yet."""
        uid, status = self.written.get(key, ("", None))
        if status is not None and uid == run["metadata"].get("uid"):
            return status
        return p.as_status(run.get("status"))

    def _children(self, key: Key, uid: str | None = None) -> list[p.Attempt]:
        """The run's Jobs with their pods, less a deleted namesake's (other owner uid)."""
        return [x.observe_job(job, [pod for pod in self._items("pods", (key[0], jm["name"]))
                                    if pod["metadata"].get("owner") in (None, jm.get("uid"))])
                for job in self._items("jobs", key) if (jm := job["metadata"])
                and (not uid or jm.get("owner") in (None, uid))]

    def _failed_creates(self, key: Key, seen: list[p.Attempt]) -> list[p.Attempt]:
        """Attempts waiting for pods that do not exist get the Job controller's FailedCreate
        reason (a ResourceQuota, a webhook), which is only ever an Event on the Job: read
        once per resync for all Jobs (``resync_once``)."""
        uids = {j["metadata"]["name"]: j["metadata"].get("uid")
                for j in self._items("jobs", key)}
        return [dataclasses.replace(a, reason="FailedCreate", message=why[:2048])
                if a.phase == "Pending" and a.reason == "PodPending" and
                not self._items("pods", (key[0], a.name)) and
                (why := self.refusals.get(uids.get(a.name) or "")) else a for a in seen]

    def _lingering(self, key: Key, status: s.PolyaRunStatus,
                   seen: list[p.Attempt]) -> list[p.Attempt]:
        """Recorded attempts whose Job is gone but whose pods are still alive."""
        names = {a.name for a in seen}
        return [a for st in status.stages if st.job_name and st.job_name not in names
                and (a := x.lingering(st.job_name, self._items("pods", (key[0], st.job_name))))]

    async def _reconcile(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        run = self._run(key)
        if run is None or run["metadata"].get("deletionTimestamp"):
            return
        if sweep.is_parent(run.get("spec")):  # a sweep's parent: its children run (sweep.py)
            return await sweep.reconcile(self, key, run)
        uid = run["metadata"].get("uid")
        old = self._status(key, run)
        parsed = x.parse(run.get("spec"))  # ~0.2 ms: not worth a cache
        spec = parsed if isinstance(parsed, s.PolyaRunSpec) else None  # None: events only
        horizon = time.monotonic() - 120.0
        children = self._failed_creates(key, self._children(key, uid))
        children += self._lingering(key, old, children)
        plan = p.plan({**run, "status": old}, children, datetime.now(UTC),
                      policy=x.policy(spec) if spec else p.Policy(), live=self.live,
                      parsed=parsed, known={n for n, t in self.known.items() if t > horizon})
        changed = plan.status != old
        if not changed and not plan.actions:
            return
        for a in plan.of(p.StartAttempt):
            self.known[a.name] = time.monotonic()
        created = await x.apply(kube.client(), run, plan, spec, self.config.image, changed)
        for a in plan.of(p.StartAttempt):
            if a.name in created:
                metrics.JOBS_CREATED.labels(a.stage).inc()
            else:  # refused (quota, admission): not on its way to the index
                self.known.pop(a.name, None)
        for a in plan.of(p.StopAttempt):  # gone on purpose: no longer "just started"
            self.live.pop(a.name, None)
            self.known.pop(a.name, None)
        if changed:
            self.written[key] = (uid or "", plan.status)
        metrics.observe_plan(namespace, name, plan)

    async def _deleted(self, namespace: str, name: str, uid: str | None) -> None:
        """A deleted run: delete its active Jobs now (garbage collection would, later)."""
        key = (namespace, name)
        jobs = self._children(key, uid)
        await asyncio.gather(*(kube.client().delete("batch/v1", "jobs", namespace, j.name)
                               for j in jobs if j.phase in p.ACTIVE))
        for j in jobs:
            self.live.pop(j.name, None)
            self.known.pop(j.name, None)
        _, status = self.written.pop(key, ("", None))
        metrics.forget_run(namespace, name, [(st.arm, st.name) for st in
                                             (status.stages if status else [])])

    async def resync_once(self) -> None:
        """Read live progress (every running pod at once, bounded); queue the runs that moved
        or are due. Not ``kopf.timer``: a task per object, and a finalizer on every run
        (kopf/on.py, ``timer``: ``requires_finalizer=True``)."""
        runs = self.idx["runs"]
        await self._check_ready()
        now = datetime.now(UTC)
        states: dict[str, int] = {}
        polled: list[tuple[Key, str, list[dict[str, Any]]]] = []  # (run, job, its pods)
        podless: dict[str, Key] = {}  # Jobs of pending stages without pods: uid -> run
        for key in list(runs.keys()):
            run = self._run(key)
            if run is None:
                continue
            status = self._status(key, run)
            state = p.run_state(status)
            states[state] = states.get(state, 0) + 1
            wake = p.next_wakeup(run.get("spec") or {}, status, now)
            if wake is not None and wake <= 0:
                self.enqueue(key)
            if state in ("Succeeded", "Failed"):
                continue
            for st in status.stages:
                job_pods = self._items("pods", (key[0], st.job_name or ""))
                if st.state == "Running" and job_pods:
                    polled.append((key, st.job_name or "", job_pods))
                elif st.state == "Pending" and st.job_name and not job_pods:
                    podless.update({j["metadata"].get("uid"): key for j in self._items(
                        "jobs", key) if j["metadata"]["name"] == st.job_name})
        await self._refusals(podless)
        running = [pod for _, _, pods in polled for pod in pods
                   if (pod.get("status") or {}).get("phase") == "Running"]
        fetched = await x.poll_progress(running, self.config.progress_timeout,
                                        self.config.progress_budget)
        for key, job_name, job_pods in polled:
            by_index = {x.pod_index(pod) or 0: data for pod in job_pods
                        if (data := fetched.get(pod["metadata"].get("name") or ""))}
            job = next((j for j in self._items("jobs", key)
                        if j["metadata"]["name"] == job_name), None)
            data = (x.index_progress(job, job_pods, by_index)  # summed over indices
                    if job is not None and x.completions(job) > 1
                    else next(iter(by_index.values()), None))
            if data is not None and data != self.live.get(job_name):
                self.live[job_name] = data
                self.enqueue(key)
        metrics.set_states(states)
        horizon = time.monotonic() - 600
        self.known = {k: t for k, t in self.known.items() if t > horizon}

    async def _refusals(self, podless: dict[str, Key]) -> None:
        """Read the FailedCreate events (one LIST per namespace, only while some Job has no
        pods) and queue the runs whose Jobs' refusal changed."""
        found = await kube.client().failed_creates(self.config.namespaces or [None]) \
            if podless else {}
        now = {uid: found[uid] for uid in podless if uid in found}
        for uid in set(now) | set(self.refusals):
            if now.get(uid) != self.refusals.get(uid) and uid in podless:
                self.enqueue(podless[uid])
        self.refusals = now

    async def _check_ready(self) -> None:
        """Ready once kopf's indexes have listed: an event handler has run, or there is no
        PolyaRun to list (then no event comes, and empty indexes are the truth)."""
        if not self.indexed:
            try:
                self.indexed = not await kube.client().list_runs(self.config.namespaces or [None])
            except Exception as exc:  # the API is unreachable: not ready yet
                log.info("readiness: listing PolyaRuns failed: %s", exc)
        self.health.ready = self.indexed

    async def check_watch(self) -> None:
        """Compare listed PolyaRun versions with kopf's index (see watchdog.py)."""
        runs = self.idx["runs"]
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
    sweep.register(registry, op)  # a sweep child's events queue its parent (sweep.py)
    return registry, op
