#!/usr/bin/env bash
# The GCS-compatible test server's virtual environment (.venv-gcs): gcp-storage-emulator, a
# pure-Python server of the GCS JSON API that tests/trainer/test_storage_servers.py starts on
# loopback. Idempotent: skipped when the stamp records the same pins.
#
# Its own venv, like .venv-s3: a test server, kept out of the project's dependency set. The
# trainer talks to the store with pyarrow's GcsFileSystem (already in the project venv).
set -euo pipefail
exec bash "$(dirname "$0")/tool-venv.sh" .venv-gcs gcp-storage-emulator --help \
  gcp-storage-emulator==2026.7.19 google-crc32c==1.9.0
