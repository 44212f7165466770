#!/usr/bin/env bash
# The quickstart on this machine (run by `make demo` after scripts/setup.sh):
#   1. build the toy arithmetic model (cached under .cache/, shared with the tests),
#   2. write the demo data (seed questions, RL prompts, a held-out evaluation set),
#   3. `polya run manifests/samples/toy-cpu.yaml` with arms vanilla and polya,
#   4. print the comparison table and where the plots are.
# Rerunning resumes: finished stages are skipped. POLYA_DEMO_FRESH=1 starts the run over.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
RUN_FILE=${POLYA_DEMO_FILE:-manifests/samples/toy-cpu.yaml}
WORKDIR=${POLYA_DEMO_WORKDIR:-polya-runs/toy-cpu}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export TRANSFORMERS_NO_ADVISORY_WARNINGS=1 HF_HUB_DISABLE_PROGRESS_BARS=1
start=$(date +%s)

if [ "${POLYA_DEMO_FRESH:-0}" = 1 ]; then
  rm -rf "$WORKDIR"
fi

version=$("$PY" -c 'from polya_trainer.toy import TOY_VERSION; print(TOY_VERSION)')
echo "== 1/3 toy model (.cache/toy-model-v$version; a few minutes the first time)"
"$PY" -m polya_trainer.cli toy-model ".cache/toy-model-v$version"
ln -sfn "toy-model-v$version" .cache/toy-model

echo "== 2/3 demo data (polya-runs/demo-data)"
"$PY" -c 'from polya_trainer.toy import write_demo_data; print(*write_demo_data("polya-runs/demo-data").values())'

echo "== 3/3 polya run $RUN_FILE --workdir $WORKDIR"
set +e
"$PY" -m polya_trainer.cli run "$RUN_FILE" --workdir "$WORKDIR"
code=$?
set -e
elapsed=$(( $(date +%s) - start ))
echo
echo "demo: exit $code after $((elapsed / 60)) min $((elapsed % 60)) s"
exit $code
