#!/usr/bin/env bash
# The quickstart on this machine (run by `make demo` after scripts/setup.sh):
#   1. build the toy arithmetic model (cached under .cache/, shared with the tests), then the
#      demo's base model: the toy model fine-tuned for a careless habit under plain prompts
#      (polya_trainer.toy.build_careless_model; see the README's "The demo's toy world"),
#   2. write the demo data (96 seed questions, 512 RL prompts, 480 held-out evaluation
#      questions: a 95% interval on pass@1 of about +-3.5 points),
#   3. `polya run` manifests/samples/toy-cpu.yaml with arms vanilla and polya (it prints the
#      comparison table and where the report and plots are),
#   4. print pass@1 and pass@8 with 95% bootstrap intervals and the paired differences.
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

versions=$("$PY" -c 'from polya_trainer.toy import TOY_VERSION, CARELESS_VERSION; print(TOY_VERSION, CARELESS_VERSION)')
read -r toy careless <<< "$versions"
echo "== 1/4 models (.cache/toy-model-v$toy, then .cache/demo-model-v$toy.$careless; the first build takes minutes)"
"$PY" -m polya_trainer.cli toy-model ".cache/toy-model-v$toy"
ln -sfn "toy-model-v$toy" .cache/toy-model
"$PY" -c 'import sys; from polya_trainer.toy import build_careless_model; print(build_careless_model(*sys.argv[1:]))' \
  ".cache/demo-model-v$toy.$careless" ".cache/toy-model-v$toy"
ln -sfn "demo-model-v$toy.$careless" .cache/demo-model
echo "== 2/4 demo data (polya-runs/demo-data)"
"$PY" -c 'from polya_trainer.toy import write_demo_data; print(*write_demo_data("polya-runs/demo-data", train=96, rl=512, evaluation=480).values())'
if [ "${POLYA_DEMO_FRESH:-0}" = 1 ]; then
  rm -rf "$WORKDIR"
fi

echo "== 3/4 polya run $RUN_FILE --workdir $WORKDIR"
set +e
"$PY" -m polya_trainer.cli run "$RUN_FILE" --workdir "$WORKDIR"
code=$?
set -e
if [ "$code" = 0 ]; then
  echo
  echo "== 4/4 pass@k with 95% bootstrap intervals over the evaluation questions"
  "$PY" -c 'import sys; from polya_trainer.toy import print_demo_summary; print_demo_summary(sys.argv[1])' \
    "$WORKDIR"
fi
elapsed=$(( $(date +%s) - start ))
echo
echo "demo: exit $code after $((elapsed / 60)) min $((elapsed % 60)) s"
exit $code
