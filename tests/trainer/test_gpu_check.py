"""`make gpu-check` (bench/gpu_check.py) rehearsed on the CPU, so that the script cannot rot
before a GPU comes: every step and assertion runs with `--device cpu --tiny` (the four stages
on the toy model with SIGTERM and resume, the bare-library figures at bench/gpu.py's tiny
size); the two-GPU part says it did not run. What only a GPU can show: docs/performance.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_check.py"
STEPS = ["wheels", "preflight", "matmul", "toy_model", "stage_setup", "generate",
         "midtrain_sigterm", "midtrain_resume", "rl", "evaluate", "sft_figures", "memory",
         "grpo_figures", "multi_gpu"]


def probe_wheel(directory: Path) -> Path:
    """A minimal pure-Python wheel, to go through the script's offline install."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "polya_probe-0.1-py3-none-any.whl"
    files = {"polya_probe/__init__.py": "VALUE = 1\n",
             "polya_probe-0.1.dist-info/METADATA":
                 "Metadata-Version: 2.1\nName: polya-probe\nVersion: 0.1\n",
             "polya_probe-0.1.dist-info/WHEEL":
                 "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                 "Tag: py3-none-any\n"}
    record = "".join(f"{name},,\n" for name in files) + "polya_probe-0.1.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for name, text in {**files, "polya_probe-0.1.dist-info/RECORD": record}.items():
            z.writestr(name, text)
    return path


def run_check(*args: str, timeout: float, **env_vars: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH="", **env_vars)  # it finds trainer/ and tests/ itself
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_cpu_rehearsal_runs_every_step_and_assertion(toy_model_dir: Path,
                                                     tmp_path: Path) -> None:
    probe_wheel(tmp_path / "wheels")
    out = tmp_path / "gpu-check.json"
    proc = run_check("--device", "cpu", "--tiny", "--model", str(toy_model_dir),
                     "--wheels", str(tmp_path / "wheels"), "--site", str(tmp_path / "site"),
                     "--workdir", str(tmp_path / "work"), "--out", str(out), timeout=580)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    res = json.loads(out.read_text())
    steps = {s["name"]: s for s in res["steps"]}
    assert list(steps) == STEPS
    assert {n: s["status"] for n, s in steps.items() if n != "multi_gpu"} == {
        n: "passed" for n in STEPS if n != "multi_gpu"}
    assert steps["multi_gpu"]["status"] == "not run"
    assert res["multi_gpu"]["reason"] == "did not run: 1 device"
    assert res["ok"] is True and res["first_failure"] is None
    assert "did not run: 1 device" in proc.stdout

    assert "polya_probe-0.1" in res["wheels"]["installed"]
    assert res["preflight"]["versions"]["trl"] and res["matmul"]["tflops"] > 0
    assert res["generate"]["accepted"] > 0
    sig = res["midtrain_sigterm"]
    assert sig["exit_code"] == 143 and sig["checkpoint"] == "checkpoint-2"
    assert sig["precision"]["weight_dtypes"] == ["F32"]  # safetensors' name of float32
    assert sig["precision"]["bf16"] is False  # CPU: float32, no autocast (CUDA: bf16 True)
    resume = res["midtrain_resume"]
    assert resume["metrics"]["resumed_from_step"] == 2 and resume["weights"]["changed"] > 0
    assert len(res["rl"]["rewards"]) == 3 and res["rl"]["weights"]["changed"] > 0
    assert {"base", "midtrain", "rl"} <= set(res["evaluate"]["checkpoints"])
    for variant in ("torch_loop", "ours", "trl_bare"):
        assert res["sft_figures"][variant]["tokens_per_second"] > 0
        assert res["sft_figures"][variant]["mfu"] is not None
    assert res["memory"]["planned_peak_gib"] > 0
    assert res["grpo_figures"]["ours"]["step_seconds"]["median"] > 0
    names = " | ".join(f["name"] for f in res["figures"])
    for part in ("SFT MFU", "SFT step time", "GRPO step time", "peak memory", "matmul",
                 "wall time"):
        assert part in names, names
    print(f"gpu-check CPU rehearsal: {res['seconds']} s")  # the goal: under 3 minutes


def test_without_a_usable_gpu_the_preflight_refuses_and_says_why(tmp_path: Path) -> None:
    """--device cuda where CUDA is unusable (hidden here, so also on a GPU machine)."""
    out = tmp_path / "gpu-check.json"
    proc = run_check("--out", str(out), "--workdir", str(tmp_path / "w"), timeout=300,
                     CUDA_VISIBLE_DEVICES="")
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("gpu-check FAILED at preflight: no usable CUDA device"), last
    res = json.loads(out.read_text())
    assert res["ok"] is False and res["first_failure"].startswith("preflight:")
    assert [s["status"] for s in res["steps"][2:]] == ["skipped"] * (len(STEPS) - 2)
