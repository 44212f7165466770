"""Thin kopf handlers: observe, call the planner, apply its actions, write status.

How reconciles are triggered (chosen for few API requests and a fast first Job):

* kopf **indexes** keep in-memory views of the PolyaRuns, their Jobs and their pods, fed by
  kopf's watches (one list + one watch per resource kind for the whole operator, not per
  run). kopf blocks handlers until every index has done its initial listing, so after a
  restart the planner always sees every existing Job before it decides anything: together
  with the deterministic names this is what prevents duplicate Jobs.
* raw **event** handlers (``@kopf.on.event``) on PolyaRuns, Jobs and pods queue a reconcile
  of the run concerned (``kick``: a task of its own, so kopf's handler returns at once).
  Raw event handlers need no finalizer and no kopf progress annotations, so a run costs no
  kopf bookkeeping requests; Jobs and pods carry ownerReferences (garbage collection) and a
  deleted run's Jobs are also deleted explicitly. kopf's diff base (a deep copy of every
  object on every event, for on.create/on.update) is switched off: nothing reads it.
* one reconcile per run at a time; events arriving meanwhile **coalesce** into one more
  reconcile, and the echo of our own status write triggers none.
* **Jobs first**: a reconcile creates its Jobs at once; the rest (spec ConfigMap, workspace
  claim, status, Events) goes through a deferred lane that waits while Job creations are in
  flight (longer during a burst), so 1,000 new runs get their Jobs before any bookkeeping.
* one **resync loop** per operator (every ``POLYA_RESYNC_SECONDS``, default 30) reads live
  progress from the running pods (``GET http://<podIP>:9400/progress``; pods never write to
  the API), enforces run deadlines and TTLs, and retries reconciles that failed.

A reconcile makes requests only for what changed: child creations/deletions, one status
merge-patch when the status differs, and the Events of the transitions. Parsed specs are
cached per (uid, generation).

Spec changes while running: model, dataset, arms and storage are immutable (CEL rules in
the CRD, and the validating webhook when enabled); anything else applies to the stages not
started yet (one immutable spec ConfigMap per generation; running attempts keep theirs).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import kopf
from polya_trainer import spec as s

from . import kube, metrics, sweep, watchdog, webhook
from . import planner as p
from . import resources as r

log = logging.getLogger("polya_operator")
CONTROLLER = "polyarun"
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")

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
    progress_timeout: float = 2.0
    webhook: bool = field(default_factory=lambda: os.environ.get("POLYA_WEBHOOK") == "1")
    webhook_port: int = field(default_factory=lambda: int(
        os.environ.get("POLYA_WEBHOOK_PORT", "9443")))
    webhook_addr: str | None = None  # listen address (None: all interfaces)
    fetch_progress: ProgressFetcher | None = None  # tests point it at 127.0.0.1
    # Stalled-watch check (watchdog.py) every N seconds, 0 disables [POLYA_WATCH_CHECK_SECONDS]
    watch_check: float = field(default_factory=lambda: _env_float(
        "POLYA_WATCH_CHECK_SECONDS", 60.0))
    namespaces: list[str] | None = None  # watched namespaces (None or []: cluster-wide)

    def __post_init__(self) -> None:
        r.default_resources()  # a bad POLYA_DEFAULT_RESOURCES stops the operator at start


# --------------------------------------------------------------------------- index values


def _compact_job(body: dict[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    return {"metadata": {"name": meta.get("name"), "labels": dict(meta.get("labels") or {}),
                         "creationTimestamp": meta.get("creationTimestamp"),
                         "uid": meta.get("uid"), "owner": kube.controller_uid(body)},
            "spec": {"suspend": bool((body.get("spec") or {}).get("suspend"))},
            "status": dict(body.get("status") or {})}


def _compact_pod(body: dict[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    st = body.get("status") or {}
    port = r.METRICS_PORT
    for c in (body.get("spec") or {}).get("containers") or []:
        for pt in c.get("ports") or []:
            if pt.get("name") == "metrics":
                port = pt.get("containerPort", port)
    return {"metadata": {"name": meta.get("name"), "labels": dict(meta.get("labels") or {}),
                         "creationTimestamp": meta.get("creationTimestamp"),
                         "owner": kube.controller_uid(body)},
            "status": {"phase": st.get("phase"), "podIP": st.get("podIP"),
                       "conditions": st.get("conditions") or [],
                       "containerStatuses": st.get("containerStatuses") or []},
            "port": port}


def _job_of_pod(labels: dict[str, str]) -> str | None:
    for key in JOB_NAME_LABELS:
        if labels.get(key):
            return labels[key]
    return None


async def http_progress(pod: dict[str, Any], timeout: float = 2.0) -> dict[str, Any] | None:
    """The trainer's /progress JSON from a running pod (None when unreachable)."""
    ip = (pod.get("status") or {}).get("podIP")
    if not ip:
        return None
    url = f"http://{ip}:{pod.get('port', r.METRICS_PORT)}/progress"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as sess, \
                sess.get(url) as resp:
            if resp.status != 200:
                return None
            data = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    return data if isinstance(data, dict) and "stage" in data else None


# --------------------------------------------------------------------------- the operator


class Operator:
    """Handlers and in-memory state of one operator instance (one per kopf registry)."""

    def __init__(self, config: Config | None = None):
        self.config = config or Config()
        self.idx: dict[str, Any] = {}
        self.status: dict[tuple[str, str, str], dict[str, Any]] = {}  # last written, by uid
        self.live: dict[str, dict[str, Any]] = {}  # job name -> live progress
        self.known: dict[str, float] = {}  # job name -> monotonic creation time
        self.locks: dict[tuple[str, str], asyncio.Lock] = collections.defaultdict(asyncio.Lock)
        self.waiting: set[tuple[str, str]] = set()  # runs with a reconcile queued on the lock
        # Parsed specs by run: (uid, generation, spec or SpecError). The API server bumps
        # metadata.generation on every spec change, so a run is parsed once per generation.
        self.specs: dict[tuple[str, str], tuple[str, Any, Any]] = {}
        # Runs deleted lately, by name: a namesake created next may find the old run's spec
        # ConfigMap still there (garbage collection is asynchronous), so its first Jobs wait
        # until its own ConfigMap exists (see _reconcile).
        self.deleted: dict[tuple[str, str], float] = {}
        self.health = metrics.Health(self.config.resync)
        self.lane = Lane()
        self.watch_check = watchdog.WatchCheck(self.config.watch_check)
        self._tasks: list[asyncio.Task[Any]] = []
        self._inflight: set[asyncio.Task[Any]] = set()  # queued reconciles (kick)
        self._runner: Any = None

    # ------------------------------------------------------------------ registration
    def register(self, registry: kopf.OperatorRegistry) -> None:
        g, v, pl = s.GROUP, s.VERSION, s.PLURAL
        present = {r.LABEL_RUN: kopf.PRESENT}
        kopf.on.login(registry=registry)(self.login)
        kopf.on.startup(registry=registry)(self.startup)
        kopf.on.cleanup(registry=registry)(self.cleanup)
        kopf.index(g, v, pl, registry=registry, id="runs")(self.index_run)
        kopf.index("batch", "v1", "jobs", labels=present, registry=registry,
                   id="jobs")(self.index_job)
        kopf.index("", "v1", "pods", labels=present, registry=registry,
                   id="pods")(self.index_pod)
        kopf.on.event(g, v, pl, registry=registry, id="run-event")(self.on_run)
        kopf.on.event("batch", "v1", "jobs", labels=present, registry=registry,
                      id="job-event")(self.on_child)
        kopf.on.event("", "v1", "pods", labels=present, registry=registry,
                      id="pod-event")(self.on_child)
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
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix="polya.dev")
        settings.persistence.diffbase_storage = _NoDiffBase()
        # Server-side filtering: the handlers' ``labels=`` filters are applied by kopf on the
        # client after the API server sent every Job and Pod of the watched namespaces; with
        # these selectors the list and watch requests carry ``labelSelector`` and only our
        # children are ever sent (kopf _cogs/clients/watching.py and fetching.py add them).
        for key in (("batch/v1", "jobs"), ("v1", "pods")):
            settings.watching.label_selectors[key] = r.LABEL_RUN
        if self.config.webhook:
            webhook.configure(settings, {**os.environ,
                                         "POLYA_WEBHOOK_PORT": str(self.config.webhook_port)},
                              addr=self.config.webhook_addr)
        self._remember(kwargs)
        metrics.build_info()
        if self.config.metrics_port:
            self._runner = await metrics.serve(self.config.metrics_port, self.health)
        self._tasks.append(asyncio.create_task(self._resync_loop()))

    async def cleanup(self, **_: Any) -> None:
        tasks = [*self._tasks, *self._inflight]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._runner is not None:
            await self._runner.cleanup()
        await kube.close()

    def _remember(self, kwargs: dict[str, Any]) -> None:
        for name in ("runs", "jobs", "pods"):
            if name in kwargs:
                self.idx[name] = kwargs[name]

    # ------------------------------------------------------------------ indexes
    # Index and validation handlers are async: kopf runs sync handlers in its thread pool,
    # a thread hop per watch event that dominated a burst's CPU time.
    @staticmethod
    async def index_run(namespace: str, name: str, body: kopf.Body,
                        **_: Any) -> dict[Any, Any]:
        meta = body.get("metadata") or {}
        return {(namespace, name): {
            "metadata": {"name": name, "namespace": namespace, "uid": meta.get("uid"),
                         "generation": meta.get("generation"),
                         "resourceVersion": meta.get("resourceVersion"),
                         "deletionTimestamp": meta.get("deletionTimestamp")},
            "spec": dict(body.get("spec") or {}), "status": dict(body.get("status") or {})}}

    @staticmethod
    async def index_job(namespace: str, labels: dict[str, str], body: kopf.Body,
                        **_: Any) -> dict[Any, Any]:
        return {(namespace, labels[r.LABEL_RUN]): _compact_job(dict(body))}

    @staticmethod
    async def index_pod(namespace: str, labels: dict[str, str], body: kopf.Body,
                        **_: Any) -> dict[Any, Any]:
        job = _job_of_pod(labels)
        return {(namespace, job): _compact_pod(dict(body))} if job else {}

    # ------------------------------------------------------------------ events
    async def on_run(self, type: str | None, body: kopf.Body, namespace: str, name: str,
                     **kwargs: Any) -> None:
        self._remember(kwargs)
        metrics.observed_event()
        if type == "DELETED":
            await self._deleted(namespace, name, dict(body))
            return
        if type == "MODIFIED" and self._echo(namespace, name, body):
            return
        self.kick(namespace, name)

    def _echo(self, namespace: str, name: str, body: kopf.Body) -> bool:
        """Is this event only the echo of our own status write? (Then nothing changed that
        a reconcile would read: Job and pod changes trigger their own reconciles.)"""
        meta = body.get("metadata") or {}
        mine = self.status.get((namespace, name, meta.get("uid") or ""))
        if mine is None or meta.get("deletionTimestamp"):
            return False
        status = body.get("status") or {}
        return meta.get("generation") == status.get("observedGeneration") and \
            _pruned(dict(status)) == _pruned(mine)

    async def on_child(self, type: str | None, namespace: str, labels: dict[str, str],
                       **kwargs: Any) -> None:
        self._remember(kwargs)
        metrics.observed_event()
        self.kick(namespace, labels[r.LABEL_RUN])

    @staticmethod
    async def validate(spec: dict[str, Any], name: str | None = None, **_: Any) -> None:
        errors: list[tuple[str, str]] = []
        bad_name = p.name_error(name) if name else None  # (generateName: no name yet)
        if bad_name:
            errors.append(("metadata.name", bad_name))
        try:
            s.parse_spec(dict(spec))
        except s.SpecError as exc:
            errors += exc.errors
        if errors:
            raise kopf.AdmissionError(str(s.SpecError(errors)), code=422)

    # ------------------------------------------------------------------ reconcile
    def _run(self, namespace: str, name: str) -> dict[str, Any] | None:
        runs = self.idx.get("runs")
        if runs is None or (namespace, name) not in runs:
            return None
        for value in runs[(namespace, name)]:
            return value
        return None

    def _exists(self, namespace: str, name: str, uid: str) -> bool:
        run = self._run(namespace, name)
        return run is not None and (run["metadata"].get("uid") or "") == uid and \
            not run["metadata"].get("deletionTimestamp")

    def _spec(self, namespace: str, run: dict[str, Any]) -> Any:
        meta = run["metadata"]
        key = (namespace, meta["name"])
        uid, gen = meta.get("uid") or "", meta.get("generation")
        hit = self.specs.get(key)
        if hit is None or hit[0] != uid or hit[1] != gen or gen is None:
            hit = (uid, gen, p.parse(run.get("spec")))
            self.specs[key] = hit
        return hit[2]

    def _children(self, namespace: str, name: str, uid: str | None = None) -> list[p.JobInfo]:
        """The run's Jobs (with their pods), keyed by owner UID as well as by name: after a
        delete and re-create with the same name, the old run's Jobs and pods linger until
        garbage collection removes them, and they are not this run's."""
        jobs = self.idx.get("jobs")
        pods = self.idx.get("pods")
        out = []
        if jobs is None or (namespace, name) not in jobs:
            return out
        for job in jobs[(namespace, name)]:
            jmeta = job["metadata"]
            if uid and jmeta.get("owner") not in (None, uid):
                continue
            jname = jmeta["name"]
            mine = [pod for pod in (pods[(namespace, jname)] if pods is not None and
                                    (namespace, jname) in pods else [])
                    if pod["metadata"].get("owner") in (None, jmeta.get("uid"))]
            out.append(p.observe_job(job, mine))
        return out

    def kick(self, namespace: str, name: str) -> None:
        """Queue a reconcile of the run as a task of its own (a work queue, as in
        controller-runtime): kopf's handler returns at once, so kopf's per-object state is
        not held while the reconcile waits for the run's lock or for the deferred lane."""
        key = (namespace, name)
        if key in self.waiting:
            return
        self.waiting.add(key)
        task = asyncio.create_task(self._reconcile_queued(key))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def reconcile(self, namespace: str, name: str) -> None:
        """Reconcile the run now (after the one in progress, if any)."""
        key = (namespace, name)
        if key in self.waiting:
            # A reconcile of this run is already queued behind the running one: it has not
            # read the indexes yet, so it will see this event's state too (coalescing).
            return
        self.waiting.add(key)
        await self._reconcile_queued(key)

    async def _reconcile_queued(self, key: tuple[str, str]) -> None:
        namespace, name = key
        start = time.monotonic()
        result = "success"
        queued = True
        try:
            async with self.locks[key]:
                self.waiting.discard(key)
                queued = False
                start = time.monotonic()
                result = await self._reconcile(namespace, name)
        except kube.OwnedByAnother as exc:  # a deleted namesake's child: wait for the GC
            result = "requeue"
            log.info("%s/%s waits for a deleted run's children to go: %s", namespace, name,
                     exc)
        except Exception:
            result = "error"
            metrics.RECONCILE_ERRORS.labels(CONTROLLER).inc()
            log.exception("reconcile of %s/%s failed; retried on the next resync",
                          namespace, name)
        finally:
            if queued:  # cancelled (or failed) before it got the lock
                self.waiting.discard(key)
            metrics.RECONCILE_TOTAL.labels(CONTROLLER, result).inc()
            metrics.RECONCILE_TIME.labels(CONTROLLER).observe(time.monotonic() - start)

    async def _reconcile(self, namespace: str, name: str) -> str:
        run = self._run(namespace, name)
        if run is None or run["metadata"].get("deletionTimestamp"):
            return "success"
        if sweep.is_parent(run.get("spec")):  # a sweep's parent: its children run (sweep.py)
            return "success"
        ukey = (namespace, name, run["metadata"].get("uid") or "")
        if ukey in self.status:  # our own last write wins over a not-yet-seen watch event
            run = {**run, "status": self.status[ukey]}
        now = datetime.now(UTC)
        jobs = self._children(namespace, name, ukey[2])
        plan = p.plan(run, jobs, now, live=self.live, image=self.config.image,
                      known=_Recent(self.known, 120.0), parsed=self._spec(namespace, run))
        api = kube.client()
        if (namespace, name) in self.deleted and plan.of(p.CreateConfigMap):
            # A namesake of a deleted run: its Jobs would mount a lingering ConfigMap of the
            # old run by name. Its own ConfigMap first (OwnedByAnother: wait for the GC).
            for a in plan.of(p.CreateConfigMap):
                await api.create("v1", "configmaps", namespace, a.manifest)
            plan.actions = [a for a in plan.actions if not isinstance(a, p.CreateConfigMap)]
            self.deleted.pop((namespace, name), None)
        await self._create_jobs(api, namespace, plan)
        changed = plan.status != run.get("status")
        if changed or any(not isinstance(a, p.CreateJob) for a in plan.actions):
            async with self.lane.deferred():
                if not self._exists(namespace, name, ukey[2]):
                    return "success"  # deleted meanwhile: nothing more to write
                await self._apply(api, namespace, plan)
                writes: list[Awaitable[Any]] = [api.event(run, ev.reason, ev.message, ev.type)
                                                for ev in plan.of(p.Event)]
                if changed:
                    writes.insert(0, api.patch_run_status(namespace, name, plan.status))
                    if (await asyncio.gather(*writes))[0] is not None:
                        self.status[ukey] = plan.status
                elif writes:
                    await asyncio.gather(*writes)
        self._observe(namespace, name, plan)
        return "requeue" if p.next_wakeup({**run, "status": plan.status}, now) else "success"

    async def _create_jobs(self, api: kube.Kube, namespace: str, plan: p.Plan) -> None:
        """Jobs first, as urgent work: in a burst the API server sees every run's first Job
        before the bookkeeping (ConfigMap, claim, status, Events), which waits in the
        deferred lane; a pod created before its ConfigMap/claim waits for them to appear."""
        jobs = [a for a in plan.actions if isinstance(a, p.CreateJob)]
        if not jobs:
            return
        for a in jobs:
            self.known[a.manifest["metadata"]["name"]] = time.monotonic()
        with self.lane.urgent():
            await asyncio.gather(*(self._create_job(api, namespace, a) for a in jobs))
        # Not needed any more: do not keep the manifests while the bookkeeping waits.
        plan.actions = [a for a in plan.actions if not isinstance(a, p.CreateJob)]

    async def _apply(self, api: kube.Kube, namespace: str, plan: p.Plan) -> None:
        creates: list[Awaitable[Any]] = []
        for a in plan.actions:
            if isinstance(a, p.CreateConfigMap):
                creates.append(api.create("v1", "configmaps", namespace, a.manifest))
            elif isinstance(a, p.CreatePVC):
                creates.append(api.create("v1", "persistentvolumeclaims", namespace,
                                          a.manifest))
            elif isinstance(a, p.CreateService):
                creates.append(api.create("v1", "services", namespace, a.manifest))
        if creates:
            await asyncio.gather(*creates)
        for a in plan.actions:
            if isinstance(a, p.PatchJob):
                await api.patch("batch/v1", "jobs", namespace, a.name,
                                {"spec": {"suspend": a.suspend}})
            elif isinstance(a, p.DeleteJob):
                await api.delete("batch/v1", "jobs", namespace, a.name)
                self.live.pop(a.name, None)

    async def _create_job(self, api: kube.Kube, namespace: str, a: p.CreateJob) -> None:
        try:
            created = await api.create("batch/v1", "jobs", namespace, a.manifest)
        except kube.OwnedByAnother as exc:  # a deleted run's Job of the same name lingers
            self.known.pop(a.manifest["metadata"]["name"], None)  # created again later
            log.info("not created yet: %s", exc)
            return
        if created is not None:
            metrics.JOBS_CREATED.labels(a.stage).inc()

    def _observe(self, namespace: str, name: str, plan: p.Plan) -> None:
        """Metrics of one reconcile's transitions and events."""
        stages = {(x["arm"], x["name"]): x for x in plan.status.get("stages") or []}
        for t in plan.transitions:
            if t.new in ("Succeeded", "Failed") and t.seconds is not None:
                metrics.STAGE_DURATION.labels(t.stage, t.new).observe(t.seconds)
            elif t.new == "Running" and t.seconds is not None:
                metrics.TIME_TO_RUNNING.labels(t.stage).observe(t.seconds)
        for ev in plan.of(p.Event):
            if ev.reason == "StageRetrying" and ev.stage:
                reason = stages.get((ev.arm, ev.stage), {}).get("reason") or "Unknown"
                metrics.STAGE_RETRIES.labels(ev.stage, reason).inc()
            elif ev.reason == "Preempted" and ev.stage:
                metrics.STAGE_PREEMPTIONS.labels(ev.stage).inc()
            elif ev.reason in ("RunSucceeded", "RunFailed"):
                metrics.RUNS_FINISHED.labels(ev.reason[3:]).inc()
        finished = any(c["type"] in ("Succeeded", "Failed") and c["status"] == "True"
                       for c in plan.status.get("conditions") or [])
        for (arm, stage), st in stages.items():
            if finished:
                metrics.forget_run(namespace, name, [(arm, stage)])
            else:
                metrics.RUN_PROGRESS.labels(namespace, name, arm, stage).set(
                    float(st.get("progress", 0.0)) / 100.0)

    async def _deleted(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        """A deleted run: delete its Jobs now (garbage collection would, later)."""
        uid = (body.get("metadata") or {}).get("uid") or ""
        api = kube.client()
        async with self.locks[(namespace, name)]:  # let a reconcile in progress finish
            pass
        jobs = self._children(namespace, name, uid or None)
        await asyncio.gather(*(api.delete("batch/v1", "jobs", namespace, j.name)
                               for j in jobs if j.phase in p.ACTIVE))
        for j in jobs:
            self.live.pop(j.name, None)
            self.known.pop(j.name, None)
        stages = [(x.get("arm"), x.get("name")) for x in
                  (self.status.pop((namespace, name, uid), None) or body.get("status") or {}
                   ).get("stages") or []]
        metrics.forget_run(namespace, name, stages)
        self.locks.pop((namespace, name), None)
        self.specs.pop((namespace, name), None)
        self.deleted[(namespace, name)] = time.monotonic()
        horizon = time.monotonic() - 3600
        for key in [k for k, t in self.deleted.items() if t < horizon]:
            self.deleted.pop(key, None)

    # ------------------------------------------------------------------ resync
    async def _fetch(self, pod: dict[str, Any]) -> dict[str, Any] | None:
        if self.config.fetch_progress is not None:
            return await self.config.fetch_progress(pod)
        return await http_progress(pod, self.config.progress_timeout)

    async def resync_once(self) -> None:
        """Read live progress, then reconcile every unfinished run (and TTL-due ones)."""
        runs = self.idx.get("runs")
        if runs is None:
            return
        self.health.ready = True
        now = datetime.now(UTC)
        keys = list(runs.keys())
        states: collections.Counter[str] = collections.Counter()
        todo = []
        for ns, name in keys:
            run = self._run(ns, name)
            if run is None:
                continue
            ukey = (ns, name, run["metadata"].get("uid") or "")
            status = self.status.get(ukey, run.get("status") or {})
            state = _run_state(status)
            states[state] += 1
            wake = p.next_wakeup({**run, "status": status}, now)
            if state in ("Succeeded", "Failed") and (wake is None or wake > 0):
                continue
            todo.append((ns, name))
        metrics.set_states(states)
        sem = asyncio.Semaphore(32)

        async def one(ns: str, name: str) -> None:
            async with sem:
                await self._refresh_progress(ns, name)
                await self.reconcile(ns, name)

        await asyncio.gather(*(one(ns, name) for ns, name in todo))
        horizon = time.monotonic() - 600
        for k in [k for k, t in self.known.items() if t < horizon]:
            self.known.pop(k, None)

    async def _refresh_progress(self, namespace: str, name: str) -> None:
        pods = self.idx.get("pods")
        for job in self._children(namespace, name):
            if job.phase != "Running" or pods is None or (namespace, job.name) not in pods:
                continue
            for pod in pods[(namespace, job.name)]:
                if (pod.get("status") or {}).get("phase") == "Running":
                    data = await self._fetch(pod)
                    if data is not None:
                        self.live[job.name] = data

    async def check_watch(self) -> None:
        """Compare listed PolyaRun versions with kopf's index (see watchdog.py)."""
        runs = self.idx.get("runs")
        if runs is None:
            return
        api = kube.client()
        base = f"/apis/{s.GROUP}/{s.VERSION}"
        items: list[dict[str, Any]] = []
        for ns in self.config.namespaces or [None]:
            path = f"{base}/namespaces/{ns}/{s.PLURAL}" if ns else f"{base}/{s.PLURAL}"
            items += (await api.request("GET", path) or {}).get("items") or []
        indexed: dict[tuple[str, str], str | None] = {}
        for key in list(runs.keys()):
            for value in runs[key]:
                indexed[key] = value["metadata"].get("resourceVersion")
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


class _NoDiffBase(kopf.DiffBaseStorage):
    """No diff base: the operator has raw event handlers only (no on.create/on.update), so
    kopf's diff base (a deep copy of every object on every watch event) is never read."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> Any:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> Any:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: Any) -> None:
        return None


class Lane:
    """Urgent work (creating Jobs) goes before deferred work (everything else).

    Deferred work waits until no Job creation has been in flight for ``quiet`` seconds
    (``burst_quiet`` during a burst: ``burst`` or more creations within the last second),
    and at most ``width`` deferred batches run at once; none waits more than ``patience``
    seconds (a sustained stream of creations cannot starve the status writes). With no
    burst going on it waits ``quiet`` after this run's own Job creation at most.
    """

    def __init__(self, width: int = 16, quiet: float = 0.05, burst_quiet: float = 0.5,
                 burst: int = 20, patience: float = 30.0):
        self.width, self.quiet, self.burst_quiet, self.burst = width, quiet, burst_quiet, burst
        self.patience = patience
        self.busy = 0  # urgent requests in flight
        self.last = 0.0  # when the last one ended (monotonic)
        self.recent: collections.deque[float] = collections.deque(maxlen=burst)
        self._sem: asyncio.Semaphore | None = None

    @contextlib.contextmanager
    def urgent(self) -> Any:
        self.busy += 1
        try:
            yield
        finally:
            self.busy -= 1
            self.last = time.monotonic()
            self.recent.append(self.last)

    def _wait(self) -> float:
        """Seconds deferred work should still wait (0: go)."""
        if self.busy:
            return self.quiet
        bursting = len(self.recent) == self.burst and self.last - self.recent[0] < 1.0
        return max(0.0, (self.burst_quiet if bursting else self.quiet)
                   - (time.monotonic() - self.last))

    @contextlib.asynccontextmanager
    async def deferred(self) -> Any:
        if self._sem is None:  # created in the operator's loop
            self._sem = asyncio.Semaphore(self.width)
        give_up = time.monotonic() + self.patience
        async with self._sem:
            while (wait := self._wait()) > 0 and time.monotonic() < give_up:
                await asyncio.sleep(wait)
            yield


class _Recent:
    """Names created less than ``ttl`` seconds ago (a set-like view, no copying)."""

    def __init__(self, times: dict[str, float], ttl: float):
        self.times, self.horizon = times, time.monotonic() - ttl

    def __contains__(self, name: object) -> bool:
        return self.times.get(name, 0.0) > self.horizon  # type: ignore[call-overload]


def _pruned(x: Any) -> Any:
    """``x`` without null values (a merge patch deletes them on the server)."""
    if isinstance(x, dict):
        return {k: _pruned(v) for k, v in x.items() if v is not None}
    if isinstance(x, list):
        return [_pruned(v) for v in x]
    return x


def _run_state(status: dict[str, Any]) -> str:
    conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    if conds.get("Succeeded") == "True":
        return "Succeeded"
    if conds.get("Failed") == "True":
        return "Failed"
    if conds.get("Suspended") == "True":
        return "Suspended"
    if conds.get("Running") == "True":
        return "Running"
    return "Pending"


def make_registry(config: Config | None = None) -> tuple[kopf.OperatorRegistry, Operator]:
    """A fresh registry with the operator's handlers (one per process or per test)."""
    registry = kopf.OperatorRegistry()
    op = Operator(config)
    op.register(registry)
    sweep.register(registry, op.config.namespaces)  # sweep parents (sweep.py)
    return registry, op
