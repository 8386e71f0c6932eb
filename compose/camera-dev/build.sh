#!/usr/bin/env bash
# Build the development/test camera image without any registry (compose/build-scratch-image.sh):
# it runs the work tree's camera process with the host's /usr, the project venv and the source
# tree bind-mounted read-only (EDGEPROXY_CAMERA_VOLUMES, printed on the last line).
#
#   compose/camera-dev/build.sh [TAG]        default tag: edgeproxy/camera:dev
set -euo pipefail
exec "$(dirname "$0")/../build-scratch-image.sh" "${1:-edgeproxy/camera:dev}" worker.camera camera
