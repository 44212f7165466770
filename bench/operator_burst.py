"""Operator burst benchmark on the filled kmock emulator (each part in its own process).

1. Time to first Job: N PolyaRuns are POSTed at once; for each, the time from its creation
   to its first Job's ADDED watch event. Our operator vs a bare kopf operator that only
   creates one Job per resource (bench/bare_operator.py), alternating, ``--reps`` times,
   each on a fresh emulator.
2. Operator RSS once all N runs have their first Job.
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
import platform
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
import emu  # noqa: E402
from fakecluster import FakeCluster  # noqa: E402

PY = sys.executable
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}/operator:{ROOT}/trainer:{ROOT}/bench"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
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
        self.kubeconfig = tmp / f"kc-{self.port}"
        self.kubeconfig.write_text(emu.kubeconfig(self.url))

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def start_operator(kind: str, em: Emulator, resync: float = 30.0) -> subprocess.Popen:
    env = {**ENV, "KUBECONFIG": str(em.kubeconfig), "POLYA_RESYNC_SECONDS": str(resync),
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
                timeout: float) -> dict[str, Any]:
    created: dict[str, float] = {}
    first_job: dict[str, float] = {}
    done = asyncio.Event()
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

        watcher = asyncio.create_task(watch())
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
        watcher.cancel()
    lat = sorted(first_job[k] - created[k] for k in first_job)
    return {"runs": n, "jobs_seen": len(first_job),
            "median_s": statistics.median(lat) if lat else None,
            "p90_s": lat[int(0.9 * (len(lat) - 1))] if lat else None,
            "max_s": lat[-1] if lat else None,
            "all_first_jobs_s": (max(first_job.values()) - t0) if first_job else None,
            "rss_mib_at_all_runs": rss_at_all[0] if rss_at_all else rss_mib(proc.pid)}


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
                                              "spec": {"arms": ["polya"]}}) as r:
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
    spec = {"arms": ["polya"]}
    reps: dict[str, list[dict[str, Any]]] = {"bare": [], "polya": []}
    for rep in range(args.reps):
        for kind in (("bare", "polya") if rep % 2 == 0 else ("polya", "bare")):
            em = Emulator(tmp)
            proc = start_operator(kind, em)
            try:
                await wait_ready(em.url, proc)
                res = await burst(em.url, args.runs, spec, proc, args.timeout)
            finally:
                proc.kill()
                proc.wait()
                em.stop()
            print(kind, rep, json.dumps(res), flush=True)
            reps[kind].append(res)

    def summary(kind: str, key: str) -> dict[str, Any]:
        vals = [r[key] for r in reps[kind] if r[key] is not None]
        return {"median": statistics.median(vals) if vals else None,
                "min": min(vals) if vals else None, "max": max(vals) if vals else None,
                "values": vals}

    ratio = {}
    for key in ("median_s", "p90_s", "all_first_jobs_s"):
        a, b = summary("polya", key)["median"], summary("bare", key)["median"]
        ratio[key] = (a / b) if a and b else None
    finished = await requests_per_run(tmp, args.finished_runs, args.timeout)
    print("requests", json.dumps(finished), flush=True)
    result = {
        "benchmark": "operator_burst",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "params": vars(args),
        "time_to_first_job": {k: {key: summary(k, key) for key in (
            "median_s", "p90_s", "max_s", "all_first_jobs_s")} for k in reps},
        "ratio_polya_over_bare": ratio,
        "goal_ratio_max": 1.25,
        "rss_mib_at_all_runs": {k: summary(k, "rss_mib_at_all_runs") for k in reps},
        "goal_rss_mib_max": 200,
        "requests_per_finished_four_stage_run": finished,
        "goal_requests_max": 40,
        "raw": reps,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"ratio": ratio, "rss": result["rss_mib_at_all_runs"],
                      "requests_per_run": finished["requests_per_finished_run"]}, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
