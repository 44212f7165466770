#!/usr/bin/env bash
# The S3-compatible test server's virtual environment (.venv-s3): moto in server mode, which
# tests/trainer/test_storage_servers.py starts on loopback. Idempotent: skipped when the stamp
# records the same pins.
#
# Its own venv because moto needs boto3/botocore, and every botocore release caps
# python-dateutil below 3 while the project venv's kubernetes client (37.0.2) needs 3 or later.
# The trainer talks to the store with pyarrow's filesystems (already in the project venv).
set -euo pipefail
exec bash "$(dirname "$0")/tool-venv.sh" .venv-s3 moto_server --help "moto[server]==5.2.5"
