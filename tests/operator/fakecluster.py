"""A FAKE Job controller + kubelet for the emulator (there is no kube-controller-manager or
kubelet here). It watches Jobs over HTTP like a controller would, creates their pods and moves
pod and Job status with HTTP PATCHes to the ``/status`` subresources, following what the real
controllers do for the fields the operator reads:

* pod phases Pending -> Running (podIP set) -> Succeeded/Failed with the container's
  ``terminated`` state (exit code, reason such as OOMKilled, and the termination message);
* Job conditions Complete / Failed (reasons BackoffLimitExceeded, DeadlineExceeded);
* ``podFailurePolicy``: a disrupted pod (condition DisruptionTarget) is ignored and replaced;
* ``spec.suspend``: pods are deleted while the Job is suspended and recreated after.

What each Job does comes from a script: ``outcomes(job_name) -> list`` of "succeed", "fail",
"exit2" (exit code 2: the Job's podFailurePolicy FailJob rule, reason PodFailurePolicy),
"oom", "deadline", "preempt" (disrupt the pod, then continue with the next item) or "hang"
(until the Job is suspended). With ``runner`` set, the pod's container instead runs for real
(test_e2e_subprocess.py runs it on the node double, tests/node/kubelet.py).
Each Job name is driven once, unless ``rerun`` is set: then a Job re-created under a name
already driven to its end (a new uid: a deleted run's namesake) is driven again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp

Outcomes = Callable[[str], list[str]]
Runner = Callable[[dict[str, Any], dict[str, Any]], Awaitable[tuple[int, str, str]]]


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def message(job: dict[str, Any], state: str = "Succeeded") -> str:
    """A termination message in the trainer's format (polya_trainer.runtime.progress
    .termination_message); the real one is checked on the node double (tests/node)."""
    lab = job["metadata"]["labels"]
    return json.dumps({"stage": lab.get("polya.dev/stage"), "arm": lab.get("polya.dev/arm"),
                       "state": state, "reason": "Completed" if state == "Succeeded" else
                       "RuntimeError", "progress": 100.0 if state == "Succeeded" else 50.0,
                       "metrics": {"loss": 0.25}, "outputs": {"dir": "out"}, "message": ""})


class FakeCluster:
    def __init__(self, url: str, outcomes: Outcomes | None = None, delay: float = 0.05,
                 runner: Runner | None = None, namespace: str = "default"):
        self.url = url.rstrip("/")
        self.outcomes = outcomes or (lambda name: ["succeed"])
        self.delay = delay
        self.runner = runner
        self.ns = namespace
        self.jobs: dict[str, dict[str, Any]] = {}
        self.changed: dict[str, asyncio.Event] = {}
        self.tasks: dict[str, asyncio.Task[Any]] = {}
        self.session: aiohttp.ClientSession | None = None
        self.started: list[str] = []  # job names, in order of first pod
        self.rerun = False  # drive a re-created Job (new uid) of a name already driven
        self.uids: dict[str, str] = {}  # job name -> uid of the Job driven

    # ------------------------------------------------------------------ HTTP
    async def call(self, method: str, path: str, body: Any = None, merge: bool = False) -> Any:
        assert self.session is not None
        headers = {"Content-Type": "application/merge-patch+json" if merge
                   else "application/json"}
        async with self.session.request(method, self.url + path, json=body,
                                        headers=headers) as resp:
            return await resp.json(content_type=None)

    def _jobs(self, name: str = "") -> str:
        return f"/apis/batch/v1/namespaces/{self.ns}/jobs" + (f"/{name}" if name else "")

    def _pods(self, name: str = "") -> str:
        return f"/api/v1/namespaces/{self.ns}/pods" + (f"/{name}" if name else "")

    async def job_status(self, name: str, status: dict[str, Any]) -> None:
        await self.call("PATCH", self._jobs(name) + "/status", {"status": status}, merge=True)

    async def pod_status(self, name: str, status: dict[str, Any]) -> None:
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

    async def _new_pod(self, job: dict[str, Any]) -> str:
        tmpl = job["spec"]["template"]
        name = f"{job['metadata']['name']}-{uuid.uuid4().hex[:5]}"
        labels = dict(tmpl["metadata"].get("labels") or {})
        labels["batch.kubernetes.io/job-name"] = job["metadata"]["name"]
        labels["job-name"] = job["metadata"]["name"]
        pod = {"metadata": {"name": name, "labels": labels, "ownerReferences": [{
            "apiVersion": "batch/v1", "kind": "Job", "name": job["metadata"]["name"],
            "uid": job["metadata"]["uid"], "controller": True}]},
            "spec": tmpl["spec"], "status": {"phase": "Pending"}}
        await self.call("POST", self._pods(), pod)
        return name

    async def _drive(self, name: str) -> None:
        steps = list(self.outcomes(name))
        try:
            while steps and name in self.jobs:
                if self._suspended(name):
                    await self._wait_change(name)
                    continue
                job = self.jobs[name]
                pod = await self._new_pod(job)
                await self.pod_status(pod, {"phase": "Running", "podIP": "127.0.0.1",
                                            "startTime": now()})
                await self.job_status(name, {"startTime": job.get("status", {}).get(
                    "startTime") or now(), "active": 1, "ready": 1})
                if name not in self.started:
                    self.started.append(name)
                if self.runner is not None:
                    code, msg, reason = await self.runner(job, self.jobs)
                    steps = ["succeed" if code == 0 else "fail"]
                    await self._finish(name, pod, steps[0], msg, code, reason)
                    return
                step = steps[0]
                if step == "hang":
                    while name in self.jobs and not self._suspended(name):
                        await self._wait_change(name)
                    await self._stop_pod(name, pod)
                    steps.pop(0)  # "hang" lasts until the Job is suspended (or deleted)
                    continue
                await asyncio.sleep(self.delay)
                if name not in self.jobs:
                    return
                if self._suspended(name):
                    await self._stop_pod(name, pod)
                    continue
                steps.pop(0)
                if step == "preempt":
                    await self.pod_status(pod, {"phase": "Failed", "conditions": [
                        {"type": "DisruptionTarget", "status": "True",
                         "reason": "PreemptionByScheduler", "lastTransitionTime": now()}],
                        "containerStatuses": [{"name": "trainer", "state": {"terminated": {
                            "exitCode": 143, "reason": "Error"}}}]})
                    continue  # podFailurePolicy Ignore: a new pod, not a failure
                await self._finish(name, pod, step, message(job, "Succeeded" if step ==
                                                            "succeed" else "Failed"))
                return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a fake should say why it stopped
            print(f"fake controller: {name}: {exc!r}")

    async def _stop_pod(self, name: str, pod: str) -> None:
        await self.call("DELETE", self._pods(pod))
        if name in self.jobs:
            await self.job_status(name, {"active": 0, "ready": 0, "conditions": [
                {"type": "Suspended", "status": "True", "reason": "JobSuspended"}]})

    async def _finish(self, name: str, pod: str, step: str, msg: str, code: int | None = None,
                      reason: str | None = None) -> None:
        ok = step == "succeed"
        if step == "exit2":
            code = 2
        term = {"exitCode": 0 if ok else (137 if step == "oom" else (code or 1)),
                "reason": "Completed" if ok else ("OOMKilled" if step == "oom" else
                                                  (reason or "Error")),
                "message": msg, "finishedAt": now()}
        await self.pod_status(pod, {"phase": "Succeeded" if ok else "Failed",
                                    "containerStatuses": [{"name": "trainer",
                                                           "state": {"terminated": term}}]})
        if ok:
            await self.job_status(name, {"active": 0, "ready": 0, "succeeded": 1,
                                         "completionTime": now(), "conditions": [
                                             {"type": "Complete", "status": "True",
                                              "lastTransitionTime": now()}]})
        else:
            jreason = {"deadline": "DeadlineExceeded", "exit2": "PodFailurePolicy"}.get(
                step, "BackoffLimitExceeded")
            jmessage = {"DeadlineExceeded": "Job was active longer than specified deadline",
                        "PodFailurePolicy": f"Container trainer for pod {self.ns}/{pod} failed "
                        "with exit code 2 matching FailJob rule at index 1"}.get(
                jreason, "Job has reached the specified backoff limit")
            await self.job_status(name, {"active": 0, "ready": 0, "failed": 1, "conditions": [
                {"type": "Failed", "status": "True", "reason": jreason,
                 "message": jmessage, "lastTransitionTime": now()}]})
