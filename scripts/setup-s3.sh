#!/usr/bin/env bash
# The S3-compatible test server's virtual environment (.venv-s3): moto in server mode, which
# tests/trainer/test_storage_s3.py starts on loopback. Idempotent: skipped when the stamp
# records the same pins.
#
# Its own venv because moto needs boto3/botocore, and every botocore release caps
# python-dateutil below 3 while the project venv's kubernetes client (37.0.2) needs 3 or later.
# The trainer talks to the store with pyarrow's filesystems (already in the project venv).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv-s3
PINS="moto[server]==5.2.5"
stamp=$VENV/.polya-installed

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$PINS" ] && [ -x "$VENV/bin/moto_server" ]; then
  exit 0
fi
mkdir -p "$VENV"
exec 9>"$VENV/.setup.lock"
flock 9
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$PINS" ] && [ -x "$VENV/bin/moto_server" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# shellcheck disable=SC2086
"$VENV/bin/pip" install -q --disable-pip-version-check --no-warn-script-location "$PINS"
"$VENV/bin/moto_server" --help >/dev/null
echo "$PINS" > "$stamp"
echo "setup-s3: ready ($VENV)"
