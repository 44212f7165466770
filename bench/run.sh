#!/usr/bin/env bash
# The CPU benchmark suite (`make bench`): each benchmark present in bench/ writes
# bench/results/<name>.json, its output goes to bench/results/<name>.log, and
# bench/summary.py writes bench/results/SUMMARY.md.
#
#   bash bench/run.sh            # full sizes (aim: < 20 minutes on 2 cores)
#   bash bench/run.sh --quick    # small sizes, a minute or two: checks the suite runs
#   BENCH_ONLY="answers sandbox" bash bench/run.sh   # a subset
#   BENCH_GPU=1 bash bench/run.sh                    # also bench/gpu.py (needs a GPU)
#
# A missing benchmark is skipped with a message; a failing one is recorded in
# bench/results/runs.tsv and the summary, the others still run, and the script exits 1.
# --quick writes to bench/results/quick/ so that it never replaces the full results.
set -uo pipefail

cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1
RESULTS=bench/results
[ "$QUICK" = 1 ] && RESULTS=bench/results/quick
mkdir -p "$RESULTS"
export PYTHONPATH="$PWD/trainer:$PWD/operator${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

# name | full-size flags | quick flags | time limit (s). Only answers, operator_burst,
# operator_scale and training take --out; generation and sandbox write bench/results/<name>.json themselves,
# so in quick mode their result is moved into $RESULTS afterwards.
BENCHES=(
  "answers|--questions 125 --samples 8 --reps 5|--questions 20 --samples 4 --reps 2|300"
  "generation|--reps 5|--reps 2 --prompts 4 --n 2 --tokens 16 --skip-vllm|600"
  "training|--reps 3 --steps 30|--reps 1 --steps 6 --warmup 2|600"
  "operator_burst|--runs 1000 --reps 2 --finished-runs 20|--runs 50 --reps 1 --finished-runs 3|600"
  "operator_scale|--runs 1000 --pods 50000 --jobs 5000|--runs 50 --pods 2000 --jobs 200 --idle 10 --resync 5|900"
  "sandbox|--reps 15|--reps 3 --batch 4|300"
  "sharding|--questions 48|--questions 6|600"
)
[ "${BENCH_GPU:-0}" = 1 ] && BENCHES+=("gpu|||600")

main() {  # a function, so that editing this file while it runs cannot garble the run
: > "$RESULTS/runs.tsv"
failed=0
start=$(date +%s)

# generation.py needs the briefly pretrained toy model (.cache/toy-model-v<N>, built once,
# ~3 min on idle cores, much longer on busy ones): build it outside that benchmark's limit.
if [ -f bench/generation.py ] && { [ -z "${BENCH_ONLY:-}" ] || [[ " $BENCH_ONLY " == *" generation "* ]]; }; then
  echo "== toy model for generation (cached under .cache/)"
  timeout 3600 "$PY" -c "from pathlib import Path; from polya_trainer.toy import TOY_VERSION, \
build_toy_model; build_toy_model(Path('.cache') / f'toy-model-v{TOY_VERSION}')" \
    > "$RESULTS/toy_model.log" 2>&1 || { echo "   toy model build failed"; failed=1; }
fi
for entry in "${BENCHES[@]}"; do
  IFS='|' read -r name full quick limit <<< "$entry"
  if [ -n "${BENCH_ONLY:-}" ] && [[ " $BENCH_ONLY " != *" $name "* ]]; then
    continue
  fi
  script=bench/$name.py
  if [ ! -f "$script" ]; then
    echo "== $name: skipped ($script not present)"
    printf '%s\tskipped (not present)\t0\n' "$name" >> "$RESULTS/runs.tsv"
    continue
  fi
  flags=$full
  [ "$QUICK" = 1 ] && flags=$quick
  out_flag=()
  case $name in
    answers|operator_burst|operator_scale|training|gpu) out_flag=(--out "$RESULTS/$name.json") ;;
  esac
  # shellcheck disable=SC2206  # word splitting of the flag strings is intended
  args=($flags)
  echo "== $name: $PY $script ${args[*]} ${out_flag[*]}"
  t0=$(date +%s)
  if [ "$QUICK" = 1 ] && [ -z "${out_flag[*]}" ] && [ -f "bench/results/$name.json" ]; then
    cp -p "bench/results/$name.json" "$RESULTS/.$name.full.json"  # keep the full result
  fi
  timeout "$limit" "$PY" "$script" "${args[@]}" "${out_flag[@]}" > "$RESULTS/$name.log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - t0 ))
  if [ "$QUICK" = 1 ] && [ -z "${out_flag[*]}" ]; then
    new=bench/results/$name.json bak=$RESULTS/.$name.full.json
    if [ -f "$bak" ]; then  # move the quick result only if the bench rewrote the file
      if [ "$new" -nt "$bak" ]; then mv "$new" "$RESULTS/$name.json"; fi
      mv "$bak" "$new"
    elif [ -f "$new" ]; then
      mv "$new" "$RESULTS/$name.json"
    fi
  fi
  if [ "$rc" = 0 ]; then
    status=ok
  elif [ "$rc" = 124 ]; then
    status="timed out after ${limit}s"; failed=1
  else
    status="failed (exit $rc)"; failed=1
  fi
  echo "   $status in ${secs}s (log: $RESULTS/$name.log)"
  [ "$rc" = 0 ] || tail -n 5 "$RESULTS/$name.log" | sed 's/^/   | /'
  printf '%s\t%s\t%s\n' "$name" "$status" "$secs" >> "$RESULTS/runs.tsv"
done

"$PY" bench/summary.py --results "$RESULTS" > /dev/null || failed=1
echo "== summary: $RESULTS/SUMMARY.md (suite took $(( $(date +%s) - start ))s)"
return "$failed"
}

main; exit $?
