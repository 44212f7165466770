#!/usr/bin/env bash
# The quickstart on this machine (run by `make demo` after scripts/setup.sh):
#   1. build the toy arithmetic model (cached under .cache/, shared with the tests), then the
#      demo's base model: the toy model fine-tuned for a careless habit under plain prompts
#      (polya_trainer.toy.build_demo; see the README's "The demo's toy world"), and write
#      the demo data (96 seed questions, 512 RL prompts, 480 held-out evaluation
#      questions: a 95% interval on pass@1 of about +-3.5 points),
#   2. `polya run` manifests/samples/toy-cpu.yaml with arms vanilla and polya (it prints the
#      comparison table and where the report and plots are),
#   3. print pass@1 and pass@8 with 95% bootstrap intervals and the paired differences.
# Rerunning resumes: finished stages are skipped. POLYA_DEMO_FRESH=1 starts the run over.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
RUN_FILE=${POLYA_DEMO_FILE:-manifests/samples/toy-cpu.yaml}
WORKDIR=${POLYA_DEMO_WORKDIR:-polya-runs/toy-cpu}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export TRANSFORMERS_NO_ADVISORY_WARNINGS=1 HF_HUB_DISABLE_PROGRESS_BARS=1
start=$(date +%s)
mkdir -p .cache

echo "== 1/3 models and data (.cache/toy-model, then .cache/demo-model; polya-runs/demo-data)"
"$PY" -c 'from polya_trainer.toy import build_demo; print(*build_demo().values(), sep="\n")'
if [ "${POLYA_DEMO_FRESH:-0}" = 1 ]; then
  rm -rf "$WORKDIR"
fi

echo "== 2/3 polya run $RUN_FILE --workdir $WORKDIR"
set +e
"$PY" -m polya_trainer.cli run "$RUN_FILE" --workdir "$WORKDIR"
code=$?
set -e
if [ "$code" = 0 ]; then
  echo
  echo "== 3/3 pass@k with 95% bootstrap intervals over the evaluation questions"
  "$PY" -c 'import sys; from polya_trainer.toy import print_demo_summary; print_demo_summary(sys.argv[1])' \
    "$WORKDIR"
fi
elapsed=$(( $(date +%s) - start ))
echo
echo "demo: exit $code after $((elapsed / 60)) min $((elapsed % 60)) s"
exit $code
