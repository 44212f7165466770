"""Operator footprint and responsiveness in a busy cluster (issues 13 and 16).

The emulator (tests/operator/emu.py, its own process) is seeded with ``--pods`` unrelated Pods
and ``--jobs`` unrelated Jobs (no ``polya.dev/run`` label), then ``--runs`` PolyaRuns are
created and the operator (its own process) handles them: each gets its spec ConfigMap,
workspace claim, first Job and status. The runs then sit idle (their Jobs held, as Jobs
waiting for GPUs would be). Measured in the same run, once every run has its status:

* the operator's RSS (VmRSS) and peak (VmHWM);
* its idle CPU, as a percentage of one core, over ``--idle`` seconds (user + system time
  from /proc/<pid>/stat), which spans at least one resync (``--resync`` seconds); the
  operator's API requests in that window give the background request rate;
* whether any unrelated object was ever sent to the operator: the emulator records the
  label selector of every list/watch and the name of every object it sent to each client;
* the latency from a Job status change to the PolyaRun's status: the fake Job controller of
  the operator tests (tests/operator/fakecluster.py, held per Job here) drives the first Job
  of ``--latency-runs`` of the idle runs, one every ``--latency-interval`` seconds (pod
  Running, Job active, pod Succeeded, Job Complete), while the other runs stay in flight.
  Start: when the bench sends the Job's ``Complete`` status PATCH to the emulator (the
  emulator applies it before answering, so this includes the PATCH's own transit: an upper
  bound). End: when the PolyaRun watch event carrying that stage as Succeeded (its
  ``jobName`` being that Job) reaches the bench; the emulator emits watch events as it
  applies a patch, so this is the status patch landing plus local stream delivery. Same
  clock (one process), no polling. The Job-active -> stage-Running latency is kept too;
* API requests per finished four-stage run: once the operator is quiet again,
  ``--finished-runs`` new runs (one arm, four stages) are created and all their Jobs driven
  to Complete; the operator's requests (User-Agents kopf and polya-operator, counted at the
  emulator) between the snapshot before and the snapshot after (quiet again), divided by the
  runs that finished. The 1,000 in-flight runs are idle then; their background requests
  (the rate measured in the idle window times the window's length) are subtracted in a
  second figure, and the raw count is the headline.

    .venv/bin/python bench/operator_scale.py --runs 1000 --pods 50000 --jobs 5000

Goals (issues 13 and 16): at most 200 MiB, idle CPU at most 5% of a core, unrelated objects
never listed, p99 Job-status-to-PolyaRun-status latency at most 1 s, at most 40 API
requests per finished four-stage run. (The 1,000-run burst against bare kopf is
bench/operator_burst.py.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "operator"))
from common import figure, write_result  # noqa: E402
from fakecluster import FakeCluster  # noqa: E402
from operator_burst import Emulator, rss_mib, start_operator, wait_ready  # noqa: E402

GOAL_RSS, GOAL_CPU, GOAL_P99, GOAL_REQUESTS = 200.0, 5.0, 1.0, 40.0
RUNS = "/apis/polya.dev/v1alpha1/namespaces/default/polyaruns"
SPEC = {"model": {"name": "org/model"}, "arms": ["polya"]}
OPERATOR_AGENTS = ("kopf", "polya-operator")
LABEL_RUN = "polya.dev/run"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    xs = sorted(values)
    return xs[max(0, min(len(xs) - 1, -(-len(xs) * q // 100) - 1))]


class HeldCluster(FakeCluster):
    """The tests' fake Job controller, holding each Job until released: by Job name
    (:meth:`release`) or for every Job of a run (``runs``). Records when each Job's
    ``active`` and ``Complete`` status PATCHes were sent and acknowledged."""

    def __init__(self, url: str, delay: float):
        super().__init__(url, delay=delay)
        self.gates: dict[str, asyncio.Event] = {}
        self.runs: set[str] = set()
        self.sent: dict[tuple[str, str], tuple[float, float]] = {}  # (job, what) -> times

    def gate(self, name: str) -> asyncio.Event:
        return self.gates.setdefault(name, asyncio.Event())

    def release(self, name: str) -> None:
        self.gate(name).set()

    async def _drive(self, name: str) -> None:
        run = ((self.jobs.get(name) or {}).get("metadata", {}).get("labels") or {}).get(
            LABEL_RUN)
        if run not in self.runs:
            await self.gate(name).wait()
        await super()._drive(name)

    async def job_status(self, name: str, status: dict[str, Any]) -> None:
        what = ("complete" if any(c.get("type") == "Complete"
                                  for c in status.get("conditions") or [])
                else "active" if status.get("active") else None)
        t0 = time.monotonic()
        await super().job_status(name, status)
        if what:
            self.sent[(name, what)] = (t0, time.monotonic())


def stage_states(obj: dict[str, Any]) -> dict[str, str]:
    """jobName -> state of each stage entry in a PolyaRun's status."""
    out = {}
    for st in (obj.get("status") or {}).get("stages") or []:
        job = st.get("jobName") or st.get("job_name")
        if job:
            out[job] = st.get("state") or ""
    return out


def succeeded(obj: dict[str, Any]) -> bool:
    return any(c.get("type") == "Succeeded" and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


async def operator_requests(s: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, int]]:
    async with s.get(url + "/_emu") as r:
        state = await r.json()
    ops = sum(state["agents"].get(a, 0) for a in OPERATOR_AGENTS)
    by = {}
    for agent, verb, _group, resource, n in state["requests"]:
        if agent in OPERATOR_AGENTS:
            by[f"{verb} {resource}"] = by.get(f"{verb} {resource}", 0) + n
    return ops, by


async def quiet(s: aiohttp.ClientSession, url: str, still: float = 3.0,
                timeout: float = 120.0) -> int:
    """Wait until the operator's request count has not moved for ``still`` seconds."""
    t0 = time.monotonic()
    last, since = await operator_requests(s, url), time.monotonic()
    while time.monotonic() - t0 < timeout:
        await asyncio.sleep(0.5)
        now = await operator_requests(s, url)
        if now[0] != last[0]:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= still:
            break
    return last[0]


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in sorted(after.items())
            if v - before.get(k, 0)}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--pods", type=int, default=50000)
    ap.add_argument("--jobs", type=int, default=5000)
    ap.add_argument("--resync", type=float, default=30.0)
    ap.add_argument("--idle", type=float, default=60.0)
    ap.add_argument("--latency-runs", type=int, default=200,
                    help="in-flight runs whose first Job is driven to Complete")
    ap.add_argument("--latency-interval", type=float, default=0.1,
                    help="seconds between two of those runs' Jobs being released")
    ap.add_argument("--job-seconds", type=float, default=0.5,
                    help="fake Job run time (between pod Running and Complete)")
    ap.add_argument("--finished-runs", type=int, default=50)
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--out", default=str(ROOT / "bench/results/operator_scale.json"))
    args = ap.parse_args()
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"polya-scale-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    em = Emulator(tmp)
    proc = None
    fake_task = watch_task = None
    try:
        async with aiohttp.ClientSession(headers={"User-Agent": "bench/0"},
                                         timeout=aiohttp.ClientTimeout(total=None)) as s:
            t0 = time.monotonic()
            for resource, count, prefix in (("v1/pods", args.pods, "other-pod-"),
                                            ("batch/v1/jobs", args.jobs, "other-job-")):
                async with s.post(em.url + "/_emu/seed", json={
                        "resource": resource, "count": count, "prefix": prefix,
                        "labels": {"app": "someone-else"}}) as r:
                    assert r.status == 200, await r.text()
            seeded_s = time.monotonic() - t0
            proc = start_operator("polya", em, resync=args.resync)
            await wait_ready(em.url, proc)
            sem = asyncio.Semaphore(32)

            async def create(name: str) -> None:
                async with sem, s.post(em.url + RUNS, json={
                        "apiVersion": "polya.dev/v1alpha1", "kind": "PolyaRun",
                        "metadata": {"name": name}, "spec": SPEC}) as r:
                    assert r.status == 201, await r.text()

            t1 = time.monotonic()
            await asyncio.gather(*(create(f"s{i:05d}") for i in range(args.runs)))
            with_status = 0
            while time.monotonic() - t1 < args.timeout:
                async with s.get(em.url + RUNS) as r:
                    items = (await r.json())["items"]
                with_status = sum(bool((x.get("status") or {}).get("startTime"))
                                  for x in items)
                if with_status == args.runs:
                    break
                await asyncio.sleep(2.0)
            settle_s = time.monotonic() - t1
            await asyncio.sleep(2.0)
            rss = rss_mib(proc.pid)
            r0, _ = await operator_requests(s, em.url)
            c0, w0 = cpu_seconds(proc.pid), time.monotonic()
            await asyncio.sleep(args.idle)
            idle_wall = time.monotonic() - w0
            idle_cpu = 100.0 * (cpu_seconds(proc.pid) - c0) / idle_wall
            peak = rss_mib(proc.pid, "VmHWM")
            idle_requests = (await operator_requests(s, em.url))[0] - r0
            idle_rate = idle_requests / idle_wall

            # ---- latency: Job status change -> PolyaRun status, runs in flight
            fake = HeldCluster(em.url, delay=args.job_seconds)
            fake_task = asyncio.create_task(fake.run())
            seen: dict[tuple[str, str], float] = {}  # (job, state) -> first seen
            runs_state: dict[str, dict[str, Any]] = {}

            async def watch_runs() -> None:
                while True:
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        async with s.get(em.url + RUNS, params={"watch": "true"}) as r:
                            async for line in r.content:
                                if not line.strip():
                                    continue
                                now = time.monotonic()
                                obj = json.loads(line)["object"]
                                runs_state[obj["metadata"]["name"]] = obj
                                for job, state in stage_states(obj).items():
                                    seen.setdefault((job, state), now)
                    await asyncio.sleep(0.2)

            watch_task = asyncio.create_task(watch_runs())
            deadline = time.monotonic() + 120
            while len(fake.jobs) < args.runs and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            sample = sorted(n for n, j in fake.jobs.items()
                            if j["metadata"]["labels"].get(LABEL_RUN, "").startswith("s"))
            sample = sample[:args.latency_runs]
            t2 = time.monotonic()
            for name in sample:
                fake.release(name)
                await asyncio.sleep(args.latency_interval)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and \
                    sum((n, "Succeeded") in seen for n in sample) < len(sample):
                await asyncio.sleep(0.2)
            latency_phase_s = time.monotonic() - t2
            lat_done, lat_ack, lat_run = [], [], []
            for n in sample:
                if (n, "complete") in fake.sent and (n, "Succeeded") in seen:
                    sent, ack = fake.sent[(n, "complete")]
                    lat_done.append(seen[(n, "Succeeded")] - sent)
                    lat_ack.append(seen[(n, "Succeeded")] - ack)
                if (n, "active") in fake.sent and (n, "Running") in seen:
                    lat_run.append(seen[(n, "Running")] - fake.sent[(n, "active")][0])

            # ---- API requests per finished four-stage run
            await quiet(s, em.url)
            before, before_by = await operator_requests(s, em.url)
            t3 = time.monotonic()
            names = [f"f{i:04d}" for i in range(args.finished_runs)]
            fake.runs.update(names)
            await asyncio.gather(*(create(n) for n in names))
            deadline = time.monotonic() + args.timeout
            while time.monotonic() < deadline and \
                    sum(succeeded(runs_state.get(n, {})) for n in names) < len(names):
                await asyncio.sleep(0.5)
            finished = sum(succeeded(runs_state.get(n, {})) for n in names)
            await quiet(s, em.url)
            window = time.monotonic() - t3
            after, after_by = await operator_requests(s, em.url)
            async with s.get(em.url + "/_emu") as r:
                state = await r.json()
    finally:
        for task in (watch_task, fake_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if proc is not None:
            proc.kill()
            proc.wait()
        em.stop()
    served = {(a, p): names for a, p, names in state["served"]}
    unrelated = {p: sum(1 for n in served.get(("kopf", p), []) if n.startswith("other-"))
                 for p in ("pods", "jobs")}
    selectors = {f"{a} {v} {p}": sel for a, v, p, sel in state["selectors"]
                 if a == "kopf" and p in ("pods", "jobs")}
    requests = after - before
    per_run = requests / max(1, finished)
    background = idle_rate * window
    per_run_net = (requests - background) / max(1, finished)

    def summary(xs: list[float]) -> dict[str, Any]:
        return {"n": len(xs), "p50_s": pct(xs, 50), "p90_s": pct(xs, 90), "p99_s": pct(xs, 99),
                "max_s": max(xs) if xs else None,
                "mean_s": statistics.fmean(xs) if xs else None}

    done_sum, ack_sum, run_sum = summary(lat_done), summary(lat_ack), summary(lat_run)
    p99 = done_sum["p99_s"]
    figures = [
        figure(f"operator RSS, {args.runs} PolyaRuns + {args.pods} unrelated Pods + "
               f"{args.jobs} unrelated Jobs", rss, unit="MiB", goal=GOAL_RSS, goal_op="<=",
               goal_on="ours", note=f"peak (VmHWM) {peak:.1f} MiB"),
        figure(f"operator idle CPU over {args.idle:.0f} s (resync every {args.resync:.0f} s)",
               idle_cpu, unit="% of a core", goal=GOAL_CPU, goal_op="<=", goal_on="ours",
               note="user+system time of the operator process, after every run had its "
                    "status; the machine is shared, so this is an upper bound"),
        figure("unrelated Pods and Jobs sent to the operator", float(sum(unrelated.values())),
               unit="objects", goal=0, goal_op="<=", goal_on="ours",
               note=f"server-side labelSelector on every list/watch: {selectors}"),
        figure(f"p99 time from a Job's Complete status to the PolyaRun's status, "
               f"{len(lat_done)} Jobs among {args.runs} runs in flight",
               p99, unit="s", goal=GOAL_P99, goal_op="<=", goal_on="ours",
               note=f"p50 {done_sum['p50_s']:.3f} s, max {done_sum['max_s']:.3f} s; from "
                    "the Job status PATCH being sent to the PolyaRun watch event with the "
                    f"stage Succeeded; one Job released every {args.latency_interval} s"
               if lat_done else "no latency sample"),
        figure(f"API requests per finished four-stage run ({args.runs} other runs in flight)",
               round(per_run, 2), unit="requests", goal=GOAL_REQUESTS, goal_op="<=",
               goal_on="ours",
               note=f"{finished} of {args.finished_runs} runs finished; all operator "
                    f"requests in the window ({requests}); less the idle background "
                    f"({idle_rate:.3f}/s x {window:.0f} s): {per_run_net:.2f}"),
    ]
    write_result("operator_scale", {
        "figures": figures,
        "settings": vars(args), "runs_with_status": with_status,
        "seconds_to_seed": round(seeded_s, 1), "seconds_until_every_status": round(settle_s, 1),
        "rss_mib": rss, "peak_rss_mib": peak, "idle_cpu_percent": idle_cpu,
        "idle_operator_requests": idle_requests, "idle_seconds": round(idle_wall, 1),
        "unrelated_sent": unrelated, "selectors": selectors,
        "job_status_to_run_status": {
            "complete_to_succeeded_from_patch_sent": done_sum,
            "complete_to_succeeded_from_patch_acknowledged": ack_sum,
            "active_to_running_from_patch_sent": run_sum,
            "sampled_jobs": len(sample), "phase_seconds": round(latency_phase_s, 1),
            "method": "HeldCluster (tests/operator/fakecluster.py) releases one in-flight "
                      "run's first Job at a time; start = Job status PATCH sent by the bench "
                      "(acknowledged: its answer received); end = PolyaRun watch event "
                      "received by the bench with that Job's stage in the new state"},
        "requests_per_finished_four_stage_run": {
            "runs": args.finished_runs, "finished": finished,
            "operator_requests": requests, "requests_per_finished_run": per_run,
            "window_seconds": round(window, 1),
            "idle_background_requests_per_s": idle_rate,
            "requests_per_finished_run_less_background": per_run_net,
            "by_verb": delta(after_by, before_by)},
        "operator_requests_by_verb": dict(state["counts"]),
    }, path=args.out)
    print(json.dumps({"rss_mib": rss, "peak_rss_mib": peak, "idle_cpu_percent": idle_cpu,
                      "unrelated_sent": unrelated, "runs_with_status": with_status,
                      "settle_s": settle_s, "latency": done_sum, "running_latency": run_sum,
                      "requests_per_run": per_run, "finished": finished,
                      "requests_by_verb": delta(after_by, before_by)}, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
