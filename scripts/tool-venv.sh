#!/usr/bin/env bash
# A test server's own virtual environment with pinned installs, for scripts/setup-s3.sh,
# setup-gcs.sh and setup-mlflow.sh. Usage: tool-venv.sh VENV PROGRAM CHECK-ARG PIN...
# Idempotent: skipped when VENV's stamp records the same pins and VENV/bin/PROGRAM exists;
# one installer at a time (setup.sh and a person may both run it). PROGRAM CHECK-ARG must
# exit 0 once installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=$1 PROGRAM=$2 CHECK=$3
shift 3
PINS="$*"
stamp=$VENV/.polya-installed

ready() { [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$PINS" ] && [ -x "$VENV/bin/$PROGRAM" ]; }
ready && exit 0
mkdir -p "$VENV"
exec 9>"$VENV/.setup.lock"
flock 9
ready && exit 0
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check --no-warn-script-location "$@"
"$VENV/bin/$PROGRAM" "$CHECK" >/dev/null
echo "$PINS" > "$stamp"
echo "$VENV: ready"
