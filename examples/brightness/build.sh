#!/usr/bin/env bash
# Build the example app's image without any registry, as the development camera image is built
# (compose/build-scratch-image.sh): it runs as nobody, with the host's /usr, the project venv and
# the source tree bind-mounted read-only (EDGEPROXY_APP_VOLUMES, printed on the last line).
#
#   examples/brightness/build.sh [TAG]        default tag: edgeproxy/example-brightness:dev
set -euo pipefail
exec "$(dirname "$0")/../../compose/build-scratch-image.sh" "${1:-edgeproxy/example-brightness:dev}" \
  examples.brightness example-app 65534:65534
