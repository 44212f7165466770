"""Helpers shared by the benchmarks in bench/ (standard library only; torch is optional).

Result convention (what bench/summary.py reads)
-----------------------------------------------
Each benchmark writes ``bench/results/<name>.json``: one JSON object with

* ``"benchmark"``: the name (the file's stem);
* ``"figures"``: a list of headline figures, each a dict made by :func:`figure`::

      {"name": "answer checks per second",   # what is measured, in words
       "ours": 3753.7,                         # our median (None when not measured)
       "baseline": 331.3,                      # the bare library's median, same run (or None)
       "ratio": 11.33,                         # ours / baseline (None without a baseline)
       "unit": "checks/s",                     # unit of ours and baseline
       "goal": 2000, "goal_op": ">=",          # the goal, None when there is none
       "goal_on": "ours",                      # "ours" (absolute) or "ratio"
       "met": True,                            # goal_op(value, goal); None without a goal
       "ours_range": [1188.9, 4632.6],         # optional: min and max over repetitions
       "baseline_range": [258.5, 384.0],       # optional
       "note": "..."}                          # optional, one line

* ``"machine"`` (:func:`machine_info`) and ``"versions"`` (:func:`package_versions`);
* anything else the benchmark wants to keep (raw timings, settings, skip reasons under
  ``"skipped"``, findings under ``"notes"``).

summary.py also reads JSON files without ``"figures"`` (it knows the shapes of the existing
benchmarks, and otherwise lists their numbers as "raw").

Timing: :func:`alternate` runs several callables in turn for ``reps`` repetitions (order
reversed every other repetition, after a warm-up) and :func:`stats` gives median, min, max,
stdev and the spread ((max - min) / median) of the values.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
GOAL_OPS = (">=", "<=")

DEFAULT_PACKAGES = ("torch", "transformers", "trl", "accelerate", "datasets", "peft",
                    "math-verify", "vllm", "kopf", "kubernetes", "polyarun")


# --------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def gpu_info() -> list[dict[str, Any]]:
    """GPUs seen by nvidia-smi, else by an already imported torch; [] when none."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=name,memory.total,driver_version",
                                  "--format=csv,noheader,nounits"], capture_output=True,
                                 text=True, timeout=20, check=True).stdout
            gpus = []
            for line in out.strip().splitlines():
                name, mem, driver = (x.strip() for x in line.split(","))
                gpus.append({"name": name, "memory_gib": round(float(mem) / 1024, 1),
                             "driver": driver})
            return gpus
        except (OSError, subprocess.SubprocessError, ValueError):
            pass
    torch = sys.modules.get("torch")  # never import torch just to look
    if torch is not None and torch.cuda.is_available():
        return [{"name": torch.cuda.get_device_name(i),
                 "memory_gib": round(torch.cuda.get_device_properties(i).total_memory
                                     / 1024**3, 1)}
                for i in range(torch.cuda.device_count())]
    return []


def machine_info() -> dict[str, Any]:
    """Where the benchmark ran: cores, CPU model, RAM, GPUs, OS and Python."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {"nproc": usable, "cpu_count": os.cpu_count(), "cpu_model": cpu_model(),
            "ram_gib": ram_gib(), "gpus": gpu_info(), "platform": platform.platform(),
            "python": platform.python_version(), "loadavg_at_start": load}


def package_versions(names: Iterable[str] = DEFAULT_PACKAGES) -> dict[str, str | None]:
    """Installed versions (None when a package is absent)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


# --------------------------------------------------------------------------- timing


def stats(values: list[float], digits: int = 4) -> dict[str, Any]:
    """Median, min, max, stdev and spread ((max - min) / median) of repeated measurements."""
    if not values:
        return {"n": 0, "median": None, "min": None, "max": None, "stdev": None,
                "spread": None, "values": []}
    med = statistics.median(values)
    return {"n": len(values), "median": round(med, digits), "min": round(min(values), digits),
            "max": round(max(values), digits),
            "stdev": round(statistics.stdev(values), digits) if len(values) > 1 else 0.0,
            "spread": round((max(values) - min(values)) / med, 4) if med else None,
            "values": [round(v, digits) for v in values]}


def time_call(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of one call."""
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def alternate(fns: dict[str, Callable[[], Any]], reps: int, warmup: int = 1,
              rate: Callable[[float, Any], float] | None = None) -> dict[str, dict[str, Any]]:
    """Run each callable `reps` times, in turn, reversing the order every other repetition.

    Each value is the call's seconds, or ``rate(seconds, result)`` when given (for example
    ``lambda s, n: n / s`` for items per second when the callable returns an item count).
    Returns ``{name: stats(values)}``.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    values: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for i in range(reps):
        for name in names if i % 2 == 0 else names[::-1]:
            secs, result = time_call(fns[name])
            values[name].append(rate(secs, result) if rate else secs)
    return {k: stats(v) for k, v in values.items()}


# --------------------------------------------------------------------------- figures


def goal_met(value: float | None, goal: float | None, op: str = ">=") -> bool | None:
    if op not in GOAL_OPS:
        raise ValueError(f"goal_op must be one of {GOAL_OPS}, not {op!r}")
    if goal is None or value is None:
        return None
    return value >= goal if op == ">=" else value <= goal


def figure(name: str, ours: float | None, baseline: float | None = None, *, unit: str = "",
           goal: float | None = None, goal_op: str = ">=", goal_on: str = "ours",
           ours_range: tuple[float, float] | list[float] | None = None,
           baseline_range: tuple[float, float] | list[float] | None = None,
           note: str = "") -> dict[str, Any]:
    """One headline figure in the convention above; ratio and met are computed here."""
    if goal_on not in ("ours", "ratio"):
        raise ValueError("goal_on must be 'ours' or 'ratio'")
    ratio = round(ours / baseline, 4) if ours is not None and baseline else None
    out: dict[str, Any] = {
        "name": name, "ours": ours, "baseline": baseline, "ratio": ratio, "unit": unit,
        "goal": goal, "goal_op": goal_op, "goal_on": goal_on,
        "met": goal_met(ratio if goal_on == "ratio" else ours, goal, goal_op),
    }
    if ours_range is not None:
        out["ours_range"] = list(ours_range)
    if baseline_range is not None:
        out["baseline_range"] = list(baseline_range)
    if note:
        out["note"] = note
    return out


# --------------------------------------------------------------------------- writing


def write_json(path: str | Path, obj: Any) -> Path:
    """Write atomically (our runtime.artifacts when importable, else temp file + rename)."""
    path = Path(path)
    try:
        sys.path.insert(0, str(ROOT / "trainer"))
        from polya_trainer.runtime.artifacts import atomic_write_json
    except ImportError:  # a bare GPU box may lack the project's dependencies
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
        os.replace(tmp, path)
        return path
    return atomic_write_json(path, obj)


def write_result(name: str, result: dict[str, Any], path: str | Path | None = None,
                 packages: Iterable[str] = DEFAULT_PACKAGES) -> Path:
    """Fill in benchmark/machine/versions/finished_at if missing, then write the result."""
    result.setdefault("benchmark", name)
    result.setdefault("machine", machine_info())
    result.setdefault("versions", package_versions(packages))
    result.setdefault("finished_at", datetime.now(UTC).isoformat(timespec="seconds"))
    for fig in result.get("figures", []):
        missing = {"name", "ours", "baseline", "ratio", "unit", "goal", "goal_op",
                   "met"} - set(fig)
        if missing:
            raise ValueError(f"figure {fig.get('name')!r} lacks {sorted(missing)}")
    return write_json(path or RESULTS / f"{name}.json", result)
