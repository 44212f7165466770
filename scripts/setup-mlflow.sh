#!/usr/bin/env bash
# The MLflow tracking server's virtual environment (.venv-mlflow), used by the tracking tests
# (tests/trainer/test_tracking.py starts `mlflow server` on loopback from it). Idempotent:
# skipped when the stamp records the same pins.
#
# Its own venv because the full `mlflow` package (the server: Flask, SQLAlchemy, alembic, ...)
# needs pyarrow<26 and the project venv pins pyarrow 26. The project venv has only the client,
# mlflow-skinny (same version), which the trainer uses to log.
set -euo pipefail
if [ "${POLYA_SKIP_MLFLOW:-0}" = "1" ]; then
  echo "setup-mlflow: skipped (POLYA_SKIP_MLFLOW=1)"
  exit 0
fi
exec bash "$(dirname "$0")/tool-venv.sh" .venv-mlflow mlflow --version mlflow==3.17.2
