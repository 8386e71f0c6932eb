#!/usr/bin/env bash
# Build a development image without any registry (no base image to pull): the camera image
# (compose/camera-dev/build.sh) and the example app's (examples/brightness/build.sh).
#
# The image is a 1 KB root file system FROM scratch that runs `python -m MODULE`; at run time the
# host's /usr, the project venv and the source tree are bind-mounted read-only (the mounts printed
# on the last line: an operator's development setting, never an app's request). It runs exactly
# the code of the work tree, and builds in under a second.
#
#   compose/build-scratch-image.sh TAG MODULE LABEL [USER]
set -euo pipefail
umask 022  # a process may run as nobody: the root file system must be readable by all
tag="$1" module="$2" label="$3" user="${4:-}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="${EDGEPROXY_VENV:-$repo/.venv}"
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
LABEL io.edgeproxy.image=$label
${user:+USER $user}
WORKDIR $repo
ENTRYPOINT ["python", "-m", "$module"]
DOCKERFILE
# (The legacy builder's deprecation note goes to stderr: shown only when the build fails.)
docker build -q -t "$tag" "$ctx" >/dev/null 2>"$ctx/build.err" || { cat "$ctx/build.err" >&2; exit 1; }
echo "/usr:/usr:ro,$venv:$venv:ro,$repo:$repo:ro"
