#!/usr/bin/env bash
# The MLflow tracking server's virtual environment (.venv-mlflow), used by the tracking tests
# (tests/trainer/test_tracking.py starts `mlflow server` on loopback from it). Idempotent:
# skipped when the stamp records the same pins.
#
# Its own venv because the full `mlflow` package (the server: Flask, SQLAlchemy, alembic, ...)
# needs pyarrow<26 and the project venv pins pyarrow 26. The project venv has only the client,
# mlflow-skinny (same version), which the trainer uses to log.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv-mlflow
PINS="mlflow==3.17.2"
stamp=$VENV/.polya-installed

if [ "${POLYA_SKIP_MLFLOW:-0}" = "1" ]; then
  echo "setup-mlflow: skipped (POLYA_SKIP_MLFLOW=1)"
  exit 0
fi
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$PINS" ] && [ -x "$VENV/bin/mlflow" ]; then
  exit 0
fi
mkdir -p "$VENV"
exec 9>"$VENV/.setup.lock"
flock 9
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$PINS" ] && [ -x "$VENV/bin/mlflow" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# shellcheck disable=SC2086
"$VENV/bin/pip" install -q --disable-pip-version-check --no-warn-script-location $PINS
"$VENV/bin/mlflow" --version >/dev/null
echo "$PINS" > "$stamp"
echo "setup-mlflow: ready ($VENV)"
