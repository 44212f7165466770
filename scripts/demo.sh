#!/usr/bin/env bash
# The quickstart on this machine (run by `make demo` after scripts/setup.sh):
#   1. build the toy model (cached under .cache/),
#   2. write the demo data (seed questions, RL prompts, 400 held-out evaluation questions:
#      a 95% interval on pass@1 of about +-3 points),
#   3. `polya run` the demo sample with arms vanilla and polya (it prints the comparison table
#      and where the plots are),
#   4. print pass@1 and pass@8 with 95% bootstrap intervals and the paired differences.
# POLYA_DEMO_WORLD picks the toy world: `arithmetic` (default: the toy model the tests share,
# manifests/samples/toy-cpu.yaml) or `strategies` (problems with several solution strategies,
# manifests/samples/toy-strategies-cpu.yaml; see the README).
# Rerunning resumes: finished stages are skipped. POLYA_DEMO_FRESH=1 starts the run over.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
WORLD=${POLYA_DEMO_WORLD:-arithmetic}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export TRANSFORMERS_NO_ADVISORY_WARNINGS=1 HF_HUB_DISABLE_PROGRESS_BARS=1
start=$(date +%s)
mkdir -p .cache

case "$WORLD" in
  arithmetic)
    RUN_FILE=${POLYA_DEMO_FILE:-manifests/samples/toy-cpu.yaml}
    WORKDIR=${POLYA_DEMO_WORKDIR:-polya-runs/toy-cpu}
    version=$("$PY" -c 'from polya_trainer.toy import TOY_VERSION; print(TOY_VERSION)')
    echo "== 1/4 toy model (.cache/toy-model-v$version; a few minutes the first time)"
    "$PY" -m polya_trainer.cli toy-model ".cache/toy-model-v$version"
    ln -sfn "toy-model-v$version" .cache/toy-model
    echo "== 2/4 demo data (polya-runs/demo-data)"
    "$PY" -c 'from polya_trainer.toy import write_demo_data; print(*write_demo_data("polya-runs/demo-data", evaluation=400).values())'
    ;;
  strategies)
    RUN_FILE=${POLYA_DEMO_FILE:-manifests/samples/toy-strategies-cpu.yaml}
    version=$("$PY" -c 'from polya_trainer.toy import DEMO_VERSION; print(DEMO_VERSION)')
    WORKDIR=${POLYA_DEMO_WORKDIR:-polya-runs/toy-strategies-v$version}
    echo "== 1/4 toy model (.cache/demo-model-v$version; a few minutes the first time)"
    "$PY" -c 'import sys; from polya_trainer.toy import build_demo_model; print(build_demo_model(sys.argv[1]))' \
      ".cache/demo-model-v$version"
    ln -sfn "demo-model-v$version" .cache/demo-model
    echo "== 2/4 demo data (polya-runs/toy-data)"
    "$PY" -c 'from polya_trainer.toy import write_strategy_data; print(*write_strategy_data("polya-runs/toy-data").values())'
    ;;
  *)
    echo "POLYA_DEMO_WORLD must be arithmetic or strategies, not $WORLD" >&2
    exit 2
    ;;
esac
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
