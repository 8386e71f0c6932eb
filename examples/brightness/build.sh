#!/usr/bin/env bash
# Build the example app's image without any registry, the way compose/camera-dev/build.sh builds
# the development camera image: a root file system FROM scratch, with the host's /usr, the project
# venv and the source tree bind-mounted read-only at run time. Those mounts are an operator's
# setting for development (EDGEPROXY_APP_VOLUMES, printed on the last line), never an app's request.
#
#   examples/brightness/build.sh [TAG]        default tag: edgeproxy/example-brightness:dev
set -euo pipefail
umask 022  # the app runs as nobody: the root file system must be readable by all
repo="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${EDGEPROXY_VENV:-$repo/.venv}"
tag="${1:-edgeproxy/example-brightness:dev}"
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT

root="$ctx/rootfs"
mkdir -p "$root"/{usr,etc,tmp,proc,sys,dev,root,sbin,run}
chmod 1777 "$root/tmp"
ln -s usr/bin "$root/bin"; ln -s usr/lib "$root/lib"; ln -s usr/lib64 "$root/lib64"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
ENV PATH=$venv/bin:/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 PYTHONPATH=$repo PYTHONUNBUFFERED=1
LABEL io.edgeproxy.image=example-app
USER 65534:65534
WORKDIR $repo
ENTRYPOINT ["python", "-m", "examples.brightness"]
DOCKERFILE
docker build -q -t "$tag" "$ctx" >/dev/null 2>"$ctx/build.err" || { cat "$ctx/build.err" >&2; exit 1; }
echo "/usr:/usr:ro,$venv:$venv:ro,$repo:$repo:ro"
