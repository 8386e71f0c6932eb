#!/usr/bin/env bash
# Build the development/test camera image without any registry (no base image to pull).
#
# The image is a 1 KB root file system FROM scratch; at run time the Docker runtime bind-mounts
# the host's /usr, the project venv and the source tree read-only (EDGEPROXY_CAMERA_VOLUMES,
# printed by this script). It runs exactly the code of the work tree, and builds in under a second.
#
#   compose/camera-dev/build.sh [TAG]        default tag: edgeproxy/camera:dev
# Prints the EDGEPROXY_CAMERA_VOLUMES value to use with it on its last line.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${EDGEPROXY_VENV:-$repo/.venv}"
tag="${1:-edgeproxy/camera:dev}"
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT

root="$ctx/rootfs"
# /sbin is a real directory: Docker mounts its init (docker-init) at /sbin/docker-init.
mkdir -p "$root"/{usr,etc,tmp,proc,sys,dev,root,sbin,run/edgeproxy}
chmod 1777 "$root/tmp"
ln -s usr/bin "$root/bin"; ln -s usr/lib "$root/lib"; ln -s usr/lib64 "$root/lib64"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
ENV PATH=$venv/bin:/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 PYTHONPATH=$repo PYTHONUNBUFFERED=1
LABEL io.edgeproxy.image=camera
WORKDIR $repo
ENTRYPOINT ["python", "-m", "worker.camera"]
DOCKERFILE
# (The legacy builder's deprecation note goes to stderr: shown only when the build fails.)
docker build -q -t "$tag" "$ctx" >/dev/null 2>"$ctx/build.err" || { cat "$ctx/build.err" >&2; exit 1; }
echo "/usr:/usr:ro,$venv:$venv:ro,$repo:$repo:ro"
