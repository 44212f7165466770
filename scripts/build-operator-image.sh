#!/usr/bin/env bash
# Build the Dockerfile's `operator` target with podman, on a machine without a Docker engine
# or access to a container registry (optional; not part of CI):
#   1. debootstrap a minimal Debian bookworm with python3 (3.11) + venv, import it with
#      podman and tag it as the Dockerfile's PYTHON_IMAGE, so nothing is pulled;
#   2. `podman build --isolation chroot --pull=never --target operator` (pip reaches PyPI
#      through the host's CA bundle, bind-mounted read-only);
#   3. smoke-test the image without `podman run` (crun cannot set rlimits here): mount it and
#      chroot into it as uid 1000 to check imports, the entrypoint and that torch is absent.
# Usage: scripts/build-operator-image.sh [TAG]   (root; installs podman and debootstrap)
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${1:-localhost/polyarun-operator:dev}
WORK=${POLYA_IMAGE_WORK:-/var/tmp/polyarun-image}
BASE=$(sed -n 's/^ARG PYTHON_IMAGE=//p' Dockerfile)
[ "$(id -u)" = 0 ] || { echo "run as root (debootstrap, chroot)" >&2; exit 1; }

if ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman debootstrap >/dev/null
fi

if ! podman image exists "docker.io/library/$BASE"; then
  mkdir -p "$WORK"
  if [ ! -x "$WORK/rootfs/usr/bin/python3" ]; then
    rm -rf "$WORK/rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
      bookworm "$WORK/rootfs" >"$WORK/debootstrap.log"
  fi
  tar -C "$WORK/rootfs" -c . | podman import - localhost/debian-python3 >/dev/null
  podman tag localhost/debian-python3 "docker.io/library/$BASE"
fi

start=$(date +%s)
podman build --isolation chroot --pull=never --target operator -t "$TAG" \
  -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro . 
echo "build: $(( $(date +%s) - start )) s"

# Smoke test: inspect the config and run the entrypoint's code in the image as uid 1000.
podman image inspect "$TAG" --format 'user={{.Config.User}} entrypoint={{.Config.Entrypoint}}'
mnt=$(podman image mount "$TAG")
trap 'podman image unmount "$TAG" >/dev/null' EXIT
chroot --userspec=1000:1000 "$mnt" /opt/venv/bin/python -c '
import importlib.util, kopf, polya_operator, polya_trainer.spec
assert importlib.util.find_spec("torch") is None, "torch must not be in the operator image"
print("imports ok: kopf", kopf.__version__ if hasattr(kopf, "__version__") else "")
'
chroot --userspec=1000:1000 "$mnt" /opt/venv/bin/polya crd | head -3
chroot --userspec=1000:1000 "$mnt" /opt/venv/bin/polya operator --help | head -3 || true
du -sh "$mnt" | awk '{print "image size (unpacked): " $1}'
