"""A FAKE Job controller + kubelet for the emulator (there is no kube-controller-manager or
kubelet here). It watches Jobs over HTTP like a controller would, creates their pods and moves
pod and Job status with HTTP PATCHes to the ``/status`` subresources. What happens to a Job is
decided from the Job as rendered, following kubernetes pkg/controller/job/job_controller.go
(``syncJob``) and pod_failure_policy.go (``matchPodFailurePolicy``):

* one pod per index (``completionMode: Indexed``, ``completions``), named
  ``<job>-<index>-<random>`` with the ``batch.kubernetes.io/job-completion-index`` annotation
  and label, and the ``batch.kubernetes.io/job-tracking`` finalizer, which the controller
  removes once it has counted the pod;
* a failed pod goes through ``podFailurePolicy``: the rules in order, the first match wins
  (``onExitCodes`` looks only at terminated containers with a non-zero code,
  ``onPodConditions`` at the pod's conditions); ``Ignore`` replaces the pod without counting,
  ``FailJob`` fails the Job (reason PodFailurePolicy), ``FailIndex`` fails the index, ``Count``
  or no match counts it;
* counted failures against ``backoffLimitPerIndex`` (the index fails past it: ``failedIndexes``;
  more than ``maxFailedIndexes`` fails the Job, MaxFailedIndexesExceeded; all indices done with
  some failed, FailedIndexes) or else ``backoffLimit`` (default 6; BackoffLimitExceeded);
* ``activeDeadlineSeconds`` from ``status.startTime`` on the controller's clock
  (DeadlineExceeded);
* terminal conditions as since Kubernetes 1.31: ``FailureTarget`` when the failure is decided,
  the remaining pods deleted, ``Failed`` once every pod has terminated (``status.terminating``
  counts them meanwhile); ``Complete`` when every index succeeded;
* ``spec.suspend``: active pods are deleted (not counted as failures) and recreated on resume.

What each pod's container does comes from a script: ``outcomes(job_name) -> list`` of
"succeed" (exit 0), "fail" (exit 1), "exit2" (exit 2), "oom" (137, OOMKilled), "preempt" (the
pod gets condition DisruptionTarget and exits 143), "hang" (runs until stopped, or until
someone else deletes the pod, such as the Eviction API: it then exits 143 with the pod's
conditions) or "deadline" (runs past the Job's ``activeDeadlineSeconds``: the controller's
clock jumps there; a Job without one just keeps running). Each pod takes the next item; a
pod the controller stops (suspension) uses up a "hang" or "deadline", while an interrupted
other item is run again by the next pod; every index has its own copy of the script, or its
own script when ``outcomes`` gives ``{index: [...]}`` (indices left out succeed).
With ``runner`` set, a pod's container instead runs for real (test_e2e_subprocess.py runs it
on the node double, tests/node/kubelet.py; non-indexed Jobs only).
Each Job name is driven once, unless ``rerun`` is set: then a Job re-created under a name
already driven to its end (a new uid: a deleted run's namesake) is driven again.
Deleted pods stay terminating ``grace`` seconds, or while ``hold_termination`` is set.
An exception while driving a Job is kept in ``errors`` (the fixtures fail the test with it).

A pod create refused (403, 422: a ResourceQuota) becomes a FailedCreate Warning event on the
Job and is retried every second (upstream: with the controller's exponential backoff).

Left out: pods orphaned by a Job deleted with ``propagationPolicy: Orphan`` are stopped here
(upstream they run on, unmanaged); ``successPolicy``, ``parallelism``
below ``completions``, NonIndexed Jobs with ``completions`` > 1, podReplacementPolicy
(pods are replaced only once terminated), and the ``ttlSecondsAfterFinished`` controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

Outcomes = Callable[[str], list[str] | dict[int, list[str]]]
Runner = Callable[[dict[str, Any], dict[str, Any]], Awaitable[tuple[int, str, str]]]
Obj = dict[str, Any]

INDEX = "batch.kubernetes.io/job-completion-index"
TRACKING = "batch.kubernetes.io/job-tracking"
EXIT = {"succeed": (0, "Completed"), "fail": (1, "Error"), "exit2": (2, "Error"),
        "oom": (137, "OOMKilled"), "preempt": (143, "Error")}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def message(job: Obj, state: str = "Succeeded") -> str:
    """A termination message in the trainer's format (polya_trainer.runtime.progress
    .termination_message); the real one is checked on the node double (tests/node)."""
    lab = job["metadata"]["labels"]
    return json.dumps({"stage": lab.get("polya.dev/stage"), "arm": lab.get("polya.dev/arm"),
                       "state": state, "reason": "Completed" if state == "Succeeded" else
                       "RuntimeError", "progress": 100.0 if state == "Succeeded" else 50.0,
                       "metrics": {"loss": 0.25}, "outputs": {"dir": "out"}, "message": ""})


def match_pod_failure_policy(policy: Obj | None, pod: Obj) -> tuple[str, str]:
    """(action, message) for a failed pod: pod_failure_policy.go ``matchPodFailurePolicy``;
    ("Count", "") when no rule matches. Messages are the controller's."""
    meta, status = pod["metadata"], pod.get("status") or {}
    who = f"{meta.get('namespace', 'default')}/{meta['name']}"
    for i, rule in enumerate((policy or {}).get("rules") or []):
        req = rule.get("onExitCodes")
        if req:
            for cs in status.get("containerStatuses") or []:
                code = ((cs.get("state") or {}).get("terminated") or {}).get("exitCode")
                if code in (None, 0) or req.get("containerName") not in (None, cs["name"]):
                    continue
                if (code in req["values"]) == (req["operator"] == "In"):
                    return rule["action"], (f"Container {cs['name']} for pod {who} failed "
                                            f"with exit code {code} matching {rule['action']} "
                                            f"rule at index {i}")
        for want in rule.get("onPodConditions") or []:
            for cond in status.get("conditions") or []:
                if cond["type"] == want["type"] and cond["status"] == want.get("status", "True"):
                    return rule["action"], (f"Pod {who} has condition {cond['type']} matching "
                                            f"{rule['action']} rule at index {i}")
    return "Count", ""


@dataclass
class JobRun:
    """The controller's bookkeeping of one Job (what syncJob reads from pods and status)."""

    name: str
    spec: Obj
    scripts: list[list[str]]
    started: float = 0.0  # on the controller's clock
    succeeded: set[int] = field(default_factory=set)
    failed_indexes: set[int] = field(default_factory=set)
    index_failures: Counter[int] = field(default_factory=Counter)
    failed: int = 0
    active: dict[int, str] = field(default_factory=dict)  # index -> pod name
    terminating: int = 0
    verdict: tuple[str, str] | None = None  # (reason, message) of a failure

    def judge(self, index: int, pod: Obj) -> bool:
        """Account a pod that ended; True if its index is finished."""
        term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        if term["exitCode"] == 0:
            self.succeeded.add(index)
            return True
        action, why = match_pod_failure_policy(self.spec.get("podFailurePolicy"), pod)
        if action == "Ignore":
            return False
        if action == "FailJob":
            self.verdict = ("PodFailurePolicy", why)
            return True
        self.failed += 1
        self.index_failures[index] += 1
        per_index = self.spec.get("backoffLimitPerIndex")
        if action == "FailIndex" or (per_index is not None and
                                     self.index_failures[index] > per_index):
            self.failed_indexes.add(index)
            most = self.spec.get("maxFailedIndexes")
            if most is not None and len(self.failed_indexes) > most:
                self.verdict = ("MaxFailedIndexesExceeded", "Job has exceeded the specified "
                                "maximal number of failed indexes")
            return True
        if per_index is None and self.failed > self.spec.get("backoffLimit", 6):
            self.verdict = ("BackoffLimitExceeded", "Job has reached the specified backoff "
                            "limit")
            return True
        return False

    def status(self) -> Obj:
        out: Obj = {"active": len(self.active), "ready": len(self.active),
                    "terminating": self.terminating, "succeeded": len(self.succeeded),
                    "failed": self.failed}
        if self.spec.get("completionMode") == "Indexed":
            out["completedIndexes"] = ",".join(map(str, sorted(self.succeeded)))
            if self.spec.get("backoffLimitPerIndex") is not None:
                out["failedIndexes"] = ",".join(map(str, sorted(self.failed_indexes)))
        return out


class FakeCluster:
    def __init__(self, url: str, outcomes: Outcomes | None = None, delay: float = 0.05,
                 runner: Runner | None = None, namespace: str = "default",
                 grace: float = 0.05):
        self.url = url.rstrip("/")
        self.outcomes = outcomes or (lambda name: ["succeed"])
        self.delay = delay
        self.runner = runner
        self.ns = namespace
        self.grace = grace
        self.hold_termination = False
        self.offset = 0.0  # seconds the controller's clock is ahead ("deadline")
        self.jobs: dict[str, Obj] = {}
        self.changed: dict[str, asyncio.Event] = {}
        self.tasks: dict[str, asyncio.Task[Any]] = {}
        self.session: aiohttp.ClientSession | None = None
        self.started: list[str] = []  # job names, in order of first pod
        self.rerun = False  # drive a re-created Job (new uid) of a name already driven
        self.uids: dict[str, str] = {}  # job name -> uid of the Job driven
        self.errors: list[str] = []

    def clock(self) -> float:
        return time.monotonic() + self.offset

    # ------------------------------------------------------------------ HTTP
    async def call(self, method: str, path: str, body: Any = None, merge: bool = False) -> Any:
        assert self.session is not None
        headers = {"Content-Type": "application/merge-patch+json" if merge
                   else "application/json"}
        async with self.session.request(method, self.url + path, json=body,
                                        headers=headers) as resp:
            out = await resp.json(content_type=None)
            if resp.status >= 400 and resp.status != 404:
                raise RuntimeError(f"{method} {path}: {resp.status} {out}")
            return out

    def _jobs(self, name: str = "") -> str:
        return f"/apis/batch/v1/namespaces/{self.ns}/jobs" + (f"/{name}" if name else "")

    def _pods(self, name: str = "") -> str:
        return f"/api/v1/namespaces/{self.ns}/pods" + (f"/{name}" if name else "")

    async def job_status(self, name: str, status: Obj) -> None:
        await self.call("PATCH", self._jobs(name) + "/status", {"status": status}, merge=True)

    async def pod_status(self, name: str, status: Obj) -> None:
        await self.call("PATCH", self._pods(name) + "/status", {"status": status}, merge=True)

    # ------------------------------------------------------------------ controller
    async def run(self) -> None:
        self.session = aiohttp.ClientSession(headers={"User-Agent": "fake-controller/0"})
        try:
            while True:
                try:
                    await self._watch()
                except (TimeoutError, aiohttp.ClientError):
                    await asyncio.sleep(0.2)
        finally:
            for t in self.tasks.values():
                t.cancel()
            await self.session.close()

    async def _watch(self) -> None:
        assert self.session is not None
        async with self.session.get(self.url + self._jobs(), params={
                "watch": "true", "labelSelector": "polya.dev/run"},
                timeout=aiohttp.ClientTimeout(total=None)) as resp:
            async for line in resp.content:
                if not line.strip():
                    continue
                ev = json.loads(line)
                job = ev["object"]
                name = job["metadata"]["name"]
                if ev["type"] == "DELETED":
                    self.jobs.pop(name, None)
                    if name in self.changed:
                        self.changed[name].set()
                    continue
                self.jobs[name] = job
                self.changed.setdefault(name, asyncio.Event()).set()
                task, uid = self.tasks.get(name), job["metadata"].get("uid", "")
                if task is None or (self.rerun and task.done() and self.uids[name] != uid):
                    self.uids[name] = uid
                    self.tasks[name] = asyncio.create_task(self._drive(name))

    async def _wait_change(self, name: str, timeout: float | None = None) -> None:
        ev = self.changed[name]
        ev.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(ev.wait(), timeout)

    def _suspended(self, name: str) -> bool:
        job = self.jobs.get(name)
        return bool(job and (job.get("spec") or {}).get("suspend"))

    def _deleted(self, name: str) -> bool:
        job = self.jobs.get(name)
        return job is None or bool(job["metadata"].get("deletionTimestamp"))

    def _stopping(self, run: JobRun) -> bool:
        return run.verdict is not None or self._deleted(run.name) or \
            self._suspended(run.name) or self._past_deadline(run)

    def _past_deadline(self, run: JobRun) -> bool:
        """job_controller.go ``pastActiveDeadline``: active for activeDeadlineSeconds."""
        limit = run.spec.get("activeDeadlineSeconds")
        if limit is None or not run.started or self.clock() - run.started < limit:
            return False
        run.verdict = run.verdict or ("DeadlineExceeded", "Job was active longer than "
                                      "specified deadline")
        return True

    async def _new_pod(self, job: Obj, index: int) -> Obj:
        tmpl, jname = job["spec"]["template"], job["metadata"]["name"]
        labels = dict(tmpl["metadata"].get("labels") or {})
        labels.update({"batch.kubernetes.io/job-name": jname, "job-name": jname})
        meta: Obj = {"name": f"{jname}-{index}-{uuid.uuid4().hex[:5]}", "labels": labels,
                     "finalizers": [TRACKING], "ownerReferences": [{
                         "apiVersion": "batch/v1", "kind": "Job", "name": jname,
                         "uid": job["metadata"]["uid"], "controller": True,
                         "blockOwnerDeletion": True}]}
        if job["spec"].get("completionMode") == "Indexed":
            labels[INDEX] = str(index)
            meta["annotations"] = {INDEX: str(index)}
        assert self.session is not None
        async with self.session.post(self.url + self._pods(), json={
                "metadata": meta, "spec": tmpl["spec"], "status": {"phase": "Pending"}}) as resp:
            made = await resp.json(content_type=None)
        if resp.status == 201:
            return made
        if resp.status not in (403, 422):
            raise RuntimeError(f"creating a pod of {jname}: {resp.status} {made}")
        # controller_utils.go, RealPodControl.createPods: a Warning event on the Job
        await self.call("POST", f"/api/v1/namespaces/{self.ns}/events", {
            "metadata": {"generateName": f"{jname}."}, "type": "Warning",
            "reason": "FailedCreate", "message": f"Error creating: {made.get('message')}",
            "involvedObject": {"apiVersion": "batch/v1", "kind": "Job", "name": jname,
                               "namespace": self.ns, "uid": job["metadata"]["uid"]},
            "source": {"component": "job-controller"}, "lastTimestamp": now(), "count": 1})
        return None

    async def _drive(self, name: str) -> None:
        try:
            job = self.jobs[name]
            n = job["spec"].get("completions") or 1
            if self.runner is not None and n > 1:
                raise NotImplementedError("runner: Indexed Jobs are not driven for real")
            script = self.outcomes(name)
            run = JobRun(name, job["spec"], [list(script.get(i, ["succeed"]) if isinstance(
                script, dict) else script) for i in range(n)])
            await asyncio.gather(*(self._index(run, i) for i in range(n)))
            if name not in self.jobs:
                return
            if run.verdict is None and run.failed_indexes:
                run.verdict = ("FailedIndexes", "Job has failed indexes")
            while run.terminating:
                await asyncio.sleep(0.02)
            if run.verdict is None and len(run.succeeded) == n:
                await self.job_status(name, {**run.status(), "completionTime": now(),
                                             "conditions": [self._cond("Complete")]})
            elif run.verdict is not None:
                target = self._cond("FailureTarget", *run.verdict)
                await self.job_status(name, {**run.status(), "conditions": [
                    target, self._cond("Failed", *run.verdict)]})
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # kept: the fixtures fail the test with it
            self.errors.append(f"{name}: {exc!r}\n{traceback.format_exc()}")

    @staticmethod
    def _cond(kind: str, reason: str = "", msg: str = "") -> Obj:
        return {"type": kind, "status": "True", "reason": reason, "message": msg,
                "lastTransitionTime": now()}

    async def _index(self, run: JobRun, index: int) -> None:
        """Pods for one index until it is finished, the Job has failed, or it is gone."""
        name, script = run.name, run.scripts[index]
        while not self._deleted(name) and run.verdict is None:
            if self._suspended(name):
                await self.job_status(name, {**run.status(), "conditions": [
                    self._cond("Suspended", "JobSuspended", "Job suspended")]})
                while self._suspended(name):
                    await self._wait_change(name, 0.5)  # shared Event: re-check
                if name in self.jobs:
                    await self.job_status(name, {"conditions": [{**self._cond(
                        "Suspended", "JobResumed", "Job resumed"), "status": "False"}]})
                continue
            if not script:
                script.append("hang")  # a script that ran out: the container keeps running
            job = self.jobs[name]
            pod = await self._new_pod(job, index)
            if pod is None:  # refused (quota, admission): retried, with a backoff upstream
                await self._wait_change(name, 1.0)
                continue
            pname = pod["metadata"]["name"]
            run.active[index] = pname
            if not run.started:
                run.started = self.clock()
            await self.pod_status(pname, {"phase": "Running", "podIP": "127.0.0.1",
                                          "startTime": now()})
            await self.job_status(name, {**run.status(), "startTime": job.get(
                "status", {}).get("startTime") or now()})
            if name not in self.started:
                self.started.append(name)
            ended = await self._container(run, job, pod, script[0])
            if ended is not None or script[0] in ("hang", "deadline"):
                script.pop(0)  # done; an interrupted "succeed" or "fail" is run again
            del run.active[index]
            if ended is None:  # stopped by the controller (suspend, failure, deadline)
                if run.verdict is not None:
                    await self.job_status(name, {**run.status(), "conditions": [
                        self._cond("FailureTarget", *run.verdict)]})
                await self._terminate(run, pname)
                await self.job_status(name, run.status())
                continue
            pod["status"] = ended
            await self.pod_status(pname, ended)
            done = run.judge(index, pod)
            await self.call("PATCH", self._pods(pname), {"metadata": {"finalizers": None}},
                            merge=True)
            if run.verdict is not None:
                await self.job_status(name, {**run.status(), "conditions": [
                    self._cond("FailureTarget", *run.verdict)]})
                for ev in self.changed.values():
                    ev.set()  # the other indices stop their pods
            else:
                await self.job_status(name, run.status())
            if done:
                return

    async def _container(self, run: JobRun, job: Obj, pod: Obj, step: str) -> Obj | None:
        """The pod's final status, or None if the controller stopped it first."""
        if self.runner is not None:
            code, msg, reason = await self.runner(job, self.jobs)
            return self._ended(code, reason or ("Completed" if code == 0 else "Error"), msg)
        if step == "deadline" and run.spec.get("activeDeadlineSeconds") is not None:
            self.offset += run.spec["activeDeadlineSeconds"]
        if step in ("hang", "deadline"):
            while not self._stopping(run):
                await self._wait_change(run.name, 0.2)
                now_pod = await self.call("GET", self._pods(pod["metadata"]["name"]))
                if (now_pod.get("metadata") or {}).get("deletionTimestamp"):
                    # deleted by someone else (an eviction): the kubelet stops the container
                    ended = self._ended(143, "Error", "")
                    ended["conditions"] = (now_pod.get("status") or {}).get("conditions")
                    return ended
            return None
        await asyncio.sleep(self.delay)
        if self._stopping(run):
            return None
        code, reason = EXIT[step]
        ended = self._ended(code, reason, message(job, "Succeeded" if code == 0 else "Failed"))
        if step == "preempt":
            ended["conditions"] = [{"type": "DisruptionTarget", "status": "True",
                                    "reason": "PreemptionByScheduler",
                                    "lastTransitionTime": now()}]
        return ended

    @staticmethod
    def _ended(code: int, reason: str, msg: str) -> Obj:
        return {"phase": "Succeeded" if code == 0 else "Failed", "containerStatuses": [
            {"name": "trainer", "state": {"terminated": {
                "exitCode": code, "reason": reason, "message": msg, "finishedAt": now()}}}]}

    async def _terminate(self, run: JobRun, pod: str) -> None:
        """Delete a running pod: it is terminating (deletionTimestamp, the tracking finalizer
        kept) for ``grace`` seconds or while ``hold_termination``, then gone."""
        run.terminating += 1
        try:
            await self.call("DELETE", self._pods(pod))
            await self.job_status(run.name, run.status())
            await asyncio.sleep(self.grace)
            while self.hold_termination:
                await asyncio.sleep(0.05)
            await self.pod_status(pod, self._ended(143, "Error", ""))
            await self.call("PATCH", self._pods(pod), {"metadata": {"finalizers": None}},
                            merge=True)
        finally:
            run.terminating -= 1
