"""Operator burst benchmark on the filled kmock emulator (each part in its own process).

1. Time to first Job: N PolyaRuns are POSTed at once; for each, the time from its creation
   to its first Job's ADDED watch event. Our operator vs a bare kopf operator that only
   creates one Job per resource (bench/bare_operator.py), alternating, ``--reps`` times,
   each on a fresh emulator.
   Our operator creates Jobs first and defers the rest of a run's bookkeeping (spec
   ConfigMap, workspace claim, status, Events) while Job creations are in flight, so the
   time until each run's status is written is measured too (ours only: the bare operator
   writes no status of its own).
2. Operator RSS once all N runs have their first Job, and its peak (VmHWM) once the burst
   has settled (ours: every status written).
3. API requests per finished four-stage run: M runs (one arm, four stages) driven to
   Succeeded by the fake Job controller; requests counted at the emulator by User-Agent
   (kopf's watches + the operator's own client), divided by M.

    .venv/bin/python bench/operator_burst.py --runs 1000 --reps 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "operator"))
sys.path.insert(0, str(ROOT / "bench"))
import emu  # noqa: E402
from common import figure, stats, write_result  # noqa: E402
from fakecluster import FakeCluster  # noqa: E402

GOAL_RATIO, GOAL_RSS, GOAL_REQUESTS = 1.25, 200, 40

PY = sys.executable
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}/operator:{ROOT}/trainer:{ROOT}/bench"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Emulator:
    def __init__(self, tmp: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([PY, str(ROOT / "tests/operator/emu.py"), "--port",
                                      str(self.port)], env=ENV, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        assert "listening" in (self.proc.stdout.readline() if self.proc.stdout else "")
        # Ours runs as the chart's ServiceAccount (the emulator enforces its RBAC); the bare
        # kopf baseline patches PolyaRuns (finalizers, progress), which the chart does not
        # grant, so it gets the emulator's admin token.
        self.kubeconfig = tmp / f"kc-{self.port}"
        self.kubeconfig.write_text(emu.kubeconfig(self.url))
        self.admin_kubeconfig = tmp / f"kc-admin-{self.port}"
        self.admin_kubeconfig.write_text(emu.kubeconfig(self.url, emu.emu_rbac.ADMIN_TOKEN))

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def start_operator(kind: str, em: Emulator, resync: float = 30.0) -> subprocess.Popen:
    kubeconfig = em.admin_kubeconfig if kind == "bare" else em.kubeconfig
    env = {**ENV, "KUBECONFIG": str(kubeconfig), "POLYA_RESYNC_SECONDS": str(resync),
           "POLYA_OPERATOR_METRICS_PORT": "0"}
    if kind == "bare":
        cmd = [PY, "-m", "kopf", "run", "--standalone", "-n", "default", "--quiet",
               str(ROOT / "bench/bare_operator.py")]
    else:
        cmd = [PY, "-m", "polya_operator.main", "-n", "default", "--quiet"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Ready when the operator has opened its watch on PolyaRuns."""
    t0 = time.monotonic()
    async with aiohttp.ClientSession() as s:
        while time.monotonic() - t0 < timeout:
            async with s.get(url + "/_emu") as r:
                counts = (await r.json())["counts"]
            if counts.get("watch polyaruns"):
                return
            assert proc.poll() is None, "operator exited"
            await asyncio.sleep(0.2)
    raise TimeoutError("operator did not start watching")


async def burst(url: str, n: int, spec: dict[str, Any], proc: subprocess.Popen,
                timeout: float, statuses: bool) -> dict[str, Any]:
    """POST n runs at once; time each one's first Job (and, when ``statuses``, its status)."""
    created: dict[str, float] = {}
    first_job: dict[str, float] = {}
    status_at: dict[str, float] = {}
    done = asyncio.Event()
    settled = asyncio.Event()
    rss_at_all: list[float] = []

    async with aiohttp.ClientSession(headers={"User-Agent": "bench/0"}) as s:
        async def watch() -> None:
            async with s.get(url + "/apis/batch/v1/namespaces/default/jobs",
                             params={"watch": "true"},
                             timeout=aiohttp.ClientTimeout(total=None)) as r:
                async for line in r.content:
                    if not line.strip():
                        continue
                    ev = json.loads(line)
                    run = ev["object"]["metadata"].get("labels", {}).get("polya.dev/run")
                    if ev["type"] == "ADDED" and run and run not in first_job:
                        first_job[run] = time.monotonic()
                        if len(first_job) == n:
                            rss_at_all.append(rss_mib(proc.pid))
                            done.set()

        async def watch_status() -> None:
            async with s.get(url + "/apis/polya.dev/v1alpha1/namespaces/default/polyaruns",
                             params={"watch": "true"},
                             timeout=aiohttp.ClientTimeout(total=None)) as r:
                async for line in r.content:
                    if not line.strip():
                        continue
                    obj = json.loads(line)["object"]
                    name = obj["metadata"]["name"]
                    if (obj.get("status") or {}).get("startTime") and name not in status_at:
                        status_at[name] = time.monotonic()
                        if len(status_at) == n:
                            settled.set()

        watchers = [asyncio.create_task(watch())]
        if statuses:
            watchers.append(asyncio.create_task(watch_status()))
        await asyncio.sleep(0.2)
        sem = asyncio.Semaphore(64)

        async def create(i: int) -> None:
            name = f"b{i:05d}"
            async with sem:
                created[name] = time.monotonic()
                async with s.post(url + "/apis/polya.dev/v1alpha1/namespaces/default/polyaruns",
                                  json={"apiVersion": "polya.dev/v1alpha1", "kind": "PolyaRun",
                                        "metadata": {"name": name}, "spec": spec}) as r:
                    assert r.status == 201, await r.text()

        t0 = time.monotonic()
        await asyncio.gather(*(create(i) for i in range(n)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout)
        if statuses:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(settled.wait(), timeout)
        else:
            await asyncio.sleep(1.0)  # kopf's own bookkeeping patches
        peak = rss_mib(proc.pid, "VmHWM")
        for w in watchers:
            w.cancel()
    lat = sorted(first_job[k] - created[k] for k in first_job)
    slat = sorted(status_at[k] - created[k] for k in status_at)
    return {"runs": n, "jobs_seen": len(first_job),
            "median_s": statistics.median(lat) if lat else None,
            "p90_s": lat[int(0.9 * (len(lat) - 1))] if lat else None,
            "max_s": lat[-1] if lat else None,
            "all_first_jobs_s": (max(first_job.values()) - t0) if first_job else None,
            "statuses_seen": len(status_at) if statuses else None,
            "status_median_s": statistics.median(slat) if slat else None,
            "all_statuses_s": (max(status_at.values()) - t0) if status_at else None,
            "rss_mib_at_all_runs": rss_at_all[0] if rss_at_all else rss_mib(proc.pid),
            "peak_rss_mib": peak}


async def requests_per_run(tmp: Path, m: int, timeout: float) -> dict[str, Any]:
    em = Emulator(tmp)
    proc = start_operator("polya", em)
    try:
        await wait_ready(em.url, proc)
        fake = FakeCluster(em.url, delay=0.05)
        fake_task = asyncio.create_task(fake.run())
        async with aiohttp.ClientSession(headers={"User-Agent": "bench/0"}) as s:
            base = em.url + "/apis/polya.dev/v1alpha1/namespaces/default/polyaruns"
            for i in range(m):
                async with s.post(base, json={"apiVersion": "polya.dev/v1alpha1",
                                              "kind": "PolyaRun", "metadata": {"name": f"f{i}"},
                                              "spec": {"model": {"name": "org/model"},
                                                       "arms": ["polya"]}}) as r:
                    assert r.status == 201
            t0 = time.monotonic()
            finished = 0
            while time.monotonic() - t0 < timeout:
                async with s.get(base) as r:
                    items = (await r.json())["items"]
                finished = sum(any(c["type"] == "Succeeded" and c["status"] == "True"
                                   for c in (x.get("status") or {}).get("conditions") or [])
                               for x in items)
                if finished == m:
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(1.0)  # let trailing events land
            async with s.get(em.url + "/_emu") as r:
                stats = await r.json()
        fake_task.cancel()
        operator = stats["agents"].get("kopf", 0) + stats["agents"].get("polya-operator", 0)
        return {"runs": m, "finished": finished, "operator_requests": operator,
                "requests_per_finished_run": operator / max(1, finished),
                "by_agent": stats["agents"], "by_verb": stats["counts"]}
    finally:
        proc.kill()
        proc.wait()
        em.stop()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--finished-runs", type=int, default=20)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--out", default=str(ROOT / "bench/results/operator_burst.json"))
    args = ap.parse_args()
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"polya-bench-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    spec = {"model": {"name": "org/model"}, "arms": ["polya"]}
    reps: dict[str, list[dict[str, Any]]] = {"bare": [], "polya": []}
    for rep in range(args.reps):
        for kind in (("bare", "polya") if rep % 2 == 0 else ("polya", "bare")):
            em = Emulator(tmp)
            proc = start_operator(kind, em)
            try:
                await wait_ready(em.url, proc)
                res = await burst(em.url, args.runs, spec, proc, args.timeout,
                                  statuses=kind == "polya")
            finally:
                proc.kill()
                proc.wait()
                em.stop()
            print(kind, rep, json.dumps(res), flush=True)
            reps[kind].append(res)

    def summary(kind: str, key: str) -> dict[str, Any]:
        return stats([r[key] for r in reps[kind] if r.get(key) is not None])

    keys = ("median_s", "p90_s", "max_s", "all_first_jobs_s")
    ratio = {}
    for key in ("median_s", "p90_s", "all_first_jobs_s"):
        a, b = summary("polya", key)["median"], summary("bare", key)["median"]
        ratio[key] = round(a / b, 4) if a and b else None
    # Each repetition's pair (run back to back) also gives a ratio: less sensitive to the
    # machine's load drifting between repetitions.
    pairs = zip(reps["polya"], reps["bare"], strict=True)
    paired = [round(o["median_s"] / b["median_s"], 4) for o, b in pairs
              if o["median_s"] and b["median_s"]]
    finished = await requests_per_run(tmp, args.finished_runs, args.timeout)
    print("requests", json.dumps(finished), flush=True)
    n = args.runs
    ttfj = {k: {key: summary(k, key) for key in keys} for k in reps}
    rss = {k: summary(k, "rss_mib_at_all_runs") for k in reps}
    peak = {k: summary(k, "peak_rss_mib") for k in reps}
    status = {key: summary("polya", key) for key in ("status_median_s", "all_statuses_s")}

    def rng(x: dict[str, Any]) -> list[float] | None:
        return [x["min"], x["max"]] if x["n"] else None

    o, b = ttfj["polya"]["median_s"], ttfj["bare"]["median_s"]
    figures = [
        figure(f"median time to first Job, {n} PolyaRuns at once vs bare kopf",
               o["median"], b["median"], unit="s", goal=GOAL_RATIO, goal_op="<=",
               goal_on="ratio", ours_range=rng(o), baseline_range=rng(b),
               note=f"{args.reps} interleaved repetitions; paired ratios {paired}"),
        figure(f"time until all {n} runs have a Job vs bare kopf",
               ttfj["polya"]["all_first_jobs_s"]["median"],
               ttfj["bare"]["all_first_jobs_s"]["median"], unit="s",
               ours_range=rng(ttfj["polya"]["all_first_jobs_s"]),
               baseline_range=rng(ttfj["bare"]["all_first_jobs_s"]), note="no goal of its own"),
        figure(f"median time to the run's status (ours only), {n} runs at once",
               status["status_median_s"]["median"], unit="s",
               ours_range=rng(status["status_median_s"]),
               note="spec ConfigMap, claim, status and Event are deferred behind Job "
                    "creations; the bare operator writes no status"),
        figure(f"operator RSS when all {n} runs have a Job (bare kopf as baseline)",
               rss["polya"]["median"], rss["bare"]["median"], unit="MiB", goal=GOAL_RSS,
               goal_op="<=", goal_on="ours", ours_range=rng(rss["polya"]),
               baseline_range=rng(rss["bare"])),
        figure(f"operator peak RSS over the {n}-run burst (bare kopf as baseline)",
               peak["polya"]["median"], peak["bare"]["median"], unit="MiB", goal=GOAL_RSS,
               goal_op="<=", goal_on="ours", ours_range=rng(peak["polya"]),
               baseline_range=rng(peak["bare"]), note="VmHWM once every status is written"),
        figure("API requests per finished four-stage run",
               round(finished["requests_per_finished_run"], 2), unit="requests",
               goal=GOAL_REQUESTS, goal_op="<=", goal_on="ours",
               note=f"{finished['finished']} of {finished['runs']} runs finished"),
    ]
    result = {
        "benchmark": "operator_burst",
        "figures": figures,
        "params": vars(args),
        "time_to_first_job": ttfj,
        "time_to_status_polya": status,
        "ratio_polya_over_bare": ratio,
        "paired_ratios_median_s": paired,
        "goal_ratio_max": GOAL_RATIO,
        "rss_mib_at_all_runs": rss,
        "peak_rss_mib": peak,
        "goal_rss_mib_max": GOAL_RSS,
        "requests_per_finished_four_stage_run": finished,
        "goal_requests_max": GOAL_REQUESTS,
        "raw": reps,
    }
    write_result("operator_burst", result, args.out,
                 packages=("kopf", "kubernetes", "kmock", "aiohttp", "polyarun"))
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
