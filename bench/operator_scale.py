"""Operator footprint in a busy cluster (issue 13): N PolyaRuns among many unrelated objects.

The emulator (tests/operator/emu.py, its own process) is seeded with ``--pods`` unrelated Pods
and ``--jobs`` unrelated Jobs (no ``polya.dev/run`` label), then ``--runs`` PolyaRuns are
created and the operator (its own process) handles them: each gets its spec ConfigMap,
workspace claim, first Job and status (no Job controller runs, so the runs then sit idle,
as runs waiting for GPUs would). Measured once every run has its status:

* the operator's RSS (VmRSS) and peak (VmHWM);
* its idle CPU, as a percentage of one core, over ``--idle`` seconds (user + system time
  from /proc/<pid>/stat), which spans at least one resync (``--resync`` seconds);
* whether any unrelated object was ever sent to the operator: the emulator records the
  label selector of every list/watch and the name of every object it sent to each client.

    .venv/bin/python bench/operator_scale.py --runs 1000 --pods 50000 --jobs 5000

Goals (issue 13): at most 200 MiB, idle CPU at most 5% of a core, unrelated objects never
listed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from common import figure, write_result  # noqa: E402
from operator_burst import Emulator, rss_mib, start_operator, wait_ready  # noqa: E402

GOAL_RSS, GOAL_CPU = 200.0, 5.0
RUNS = "/apis/polya.dev/v1alpha1/namespaces/default/polyaruns"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--pods", type=int, default=50000)
    ap.add_argument("--jobs", type=int, default=5000)
    ap.add_argument("--resync", type=float, default=30.0)
    ap.add_argument("--idle", type=float, default=60.0)
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--out", default=str(ROOT / "bench/results/operator_scale.json"))
    args = ap.parse_args()
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"polya-scale-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    em = Emulator(tmp)
    proc = None
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

            async def create(i: int) -> None:
                async with sem, s.post(em.url + RUNS, json={
                        "apiVersion": "polya.dev/v1alpha1", "kind": "PolyaRun",
                        "metadata": {"name": f"s{i:05d}"},
                        "spec": {"model": {"name": "org/model"}, "arms": ["polya"]}}) as r:
                    assert r.status == 201, await r.text()

            t1 = time.monotonic()
            await asyncio.gather(*(create(i) for i in range(args.runs)))
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
            c0, w0 = cpu_seconds(proc.pid), time.monotonic()
            await asyncio.sleep(args.idle)
            idle_cpu = 100.0 * (cpu_seconds(proc.pid) - c0) / (time.monotonic() - w0)
            peak = rss_mib(proc.pid, "VmHWM")
            async with s.get(em.url + "/_emu") as r:
                state = await r.json()
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        em.stop()
    served = {(a, p): names for a, p, names in state["served"]}
    unrelated = {p: sum(1 for n in served.get(("kopf", p), []) if n.startswith("other-"))
                 for p in ("pods", "jobs")}
    selectors = {f"{a} {v} {p}": sel for a, v, p, sel in state["selectors"]
                 if a == "kopf" and p in ("pods", "jobs")}
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
    ]
    write_result("operator_scale", {
        "figures": figures,
        "settings": vars(args), "runs_with_status": with_status,
        "seconds_to_seed": round(seeded_s, 1), "seconds_until_every_status": round(settle_s, 1),
        "rss_mib": rss, "peak_rss_mib": peak, "idle_cpu_percent": idle_cpu,
        "unrelated_sent": unrelated, "selectors": selectors,
        "operator_requests_by_verb": dict(state["counts"]),
    }, path=args.out)
    print(json.dumps({"rss_mib": rss, "peak_rss_mib": peak, "idle_cpu_percent": idle_cpu,
                      "unrelated_sent": unrelated, "runs_with_status": with_status,
                      "settle_s": settle_s}, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
