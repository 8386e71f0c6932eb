"""What only the Docker runtime does: labels, container configuration, secrets, foreign containers."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import stat
from pathlib import Path

import pytest

from tests.support.services import wait_until
from worker.runtimes.base import LABEL_CAMERA, LABEL_CAMERA_ID, LABEL_HOST, LABEL_MANAGED, RuntimeError_

from .conftest import PASSWORD, SESSION, TEST_IMAGE, URL_PROBE, make_spec, unique

pytestmark = pytest.mark.docker


@pytest.fixture
def runtime(make_runtime):
    return make_runtime("docker")


def test_container_carries_labels_and_configuration(runtime, docker_client, camera_volumes):
    spec = make_spec(runtime)
    observed = runtime.ensure_running(spec)
    container = docker_client.containers.get(f"edgeproxy-{spec.name}")
    assert container.id == observed.container_id
    labels = container.labels
    assert labels[LABEL_MANAGED] == "true"
    assert labels[LABEL_CAMERA] == spec.name
    assert labels[LABEL_CAMERA_ID] == spec.camera_id
    assert labels[LABEL_HOST] == runtime.host
    host_config = container.attrs["HostConfig"]
    assert host_config["RestartPolicy"]["Name"] == "unless-stopped"
    assert host_config["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}
    assert host_config["NetworkMode"] == "host"
    # Plus the shared-memory frame rings, at the same path, writable through the ring group, and
    # the camera's secrets folder, read-only where the camera program reads its URL files.
    ring_dir = runtime.shm.directory
    secrets = f"{runtime.secrets_dir}/{spec.name}"
    assert host_config["Binds"] == camera_volumes + [f"{ring_dir}:{ring_dir}:rw", f"{secrets}:/run/edgeproxy:ro"]
    assert host_config["GroupAdd"] == [str(runtime.shm.group)]
    env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
    assert env["EDGEPROXY_CAMERA_NAME"] == spec.name
    assert env["EDGEPROXY_RTSP_URL_FILE"] == "/run/edgeproxy/rtsp_url"
    assert "EDGEPROXY_RTSP_URL" not in env
    assert container.attrs["Config"]["Image"] == TEST_IMAGE


def test_no_password_in_docker_inspect(runtime, docker_client):
    spec = make_spec(runtime, frames_redis_url="redis://127.0.0.1:6379/0")
    runtime.ensure_running(spec)
    container = docker_client.containers.get(f"edgeproxy-{spec.name}")
    dump = json.dumps(container.attrs)
    assert PASSWORD not in dump
    assert "rtsp://" not in dump
    assert not any(PASSWORD in value for value in container.labels.values())
    # The low-level inspect and the listing too.
    assert PASSWORD not in json.dumps(docker_client.api.inspect_container(container.id))
    assert PASSWORD not in json.dumps(docker_client.api.containers(all=True, filters={"id": container.id}))


def test_secret_files_live_in_a_private_tmpfs_folder_only_while_the_camera_runs(runtime, docker_client):
    """The URL files are handed over on the host's tmpfs (no copy into the container): owner-only on
    the host, gone when the camera stops, written afresh when it starts again, gone with it."""
    spec = make_spec(runtime, command=URL_PROBE)
    runtime.ensure_running(spec)
    folder = Path(runtime.secrets_dir) / spec.name
    assert stat.S_IMODE(os.stat(runtime.secrets_dir).st_mode) == 0o700  # no other user of the host gets in
    assert (folder / "rtsp_url").read_bytes() == spec.rtsp_url.encode()
    assert stat.S_IMODE((folder / "rtsp_url").stat().st_mode) == 0o400
    mounts = {line.split()[1]: line.split()[2] for line in Path("/proc/mounts").read_text().splitlines()}
    below = [m for m in mounts if runtime.secrets_dir == m or runtime.secrets_dir.startswith(m.rstrip("/") + "/")]
    assert mounts[max(below, key=len)] == "tmpfs"  # never written to a disk
    sha = hashlib.sha256(spec.rtsp_url.encode()).hexdigest()
    probe = f"sha {sha} mode 0o400 env False name {spec.name}"
    def output() -> str:
        return base64.b64decode(runtime.observe(spec.name).logs["stdout"] or "").decode()

    wait_until(lambda: probe in output(), 15, message="probe output")

    runtime.stop(spec.name, timeout=1)
    assert not folder.exists()
    assert runtime.ensure_running(spec).status == "running"  # the same container, its files back
    assert (folder / "rtsp_url").read_bytes() == spec.rtsp_url.encode()
    wait_until(lambda: output().count(probe) == 2, 15,
               message="the restarted camera read its URL")
    assert runtime.remove(spec.name, timeout=1)
    assert not folder.exists()


def test_unlabelled_container_with_our_name_is_never_touched(runtime, docker_client):
    name = unique("foreign")
    foreign = docker_client.containers.create(TEST_IMAGE, name=f"edgeproxy-{name}")
    docker_client.edgeproxy_foreign.append(foreign.name)
    spec = make_spec(runtime, name=name)
    with pytest.raises(RuntimeError_, match="was not made by edgeproxy"):
        runtime.ensure_running(spec)
    assert runtime.observe(name) is None
    assert runtime.stop(name) is None
    assert runtime.remove(name) is False
    assert runtime.observe_all() == []
    foreign.reload()
    assert foreign.status == "created" and foreign.labels == {"io.edgeproxy.image": "camera"}
    assert docker_client.containers.get(f"edgeproxy-{name}").id == foreign.id


def test_a_camera_of_another_host_with_the_same_name_is_refused(make_runtime):
    a, b = make_runtime("docker"), make_runtime("docker")
    spec = make_spec(a)
    a.ensure_running(spec)
    spec_b = make_spec(b, name=spec.name)
    with pytest.raises(RuntimeError_, match=f"belongs to edge host {re.escape(a.host)}"):
        b.ensure_running(spec_b)
    assert a.observe(spec.name).status == "running"


def test_missing_image_is_a_clear_error_and_never_pulled(runtime, docker_client):
    image = f"edgeproxy/camera:missing-{SESSION}"
    spec = make_spec(runtime, image=image)
    with pytest.raises(RuntimeError_, match=f"^image {re.escape(image)} is not on this host$"):
        runtime.ensure_running(spec)
    assert runtime.observe(spec.name) is None
    assert not docker_client.images.list(name=image)


def test_new_image_for_the_tag_recreates(runtime, docker_client):
    spec = make_spec(runtime)
    first = runtime.ensure_running(spec)
    wait_until(lambda: any(runtime.observe(spec.name).logs.values()), 15, message="start")  # handler set
    retag = f"edgeproxy/camera:retag-{SESSION}"
    docker_client.images.get(TEST_IMAGE).tag(retag)
    try:
        spec.image = retag
        second = runtime.ensure_running(spec)
        assert second.container_id != first.container_id and second.image == retag
        assert second.status == "running"
        assert runtime.remove(spec.name)
    finally:
        docker_client.images.remove(retag, noprune=True)


def test_other_network_and_log_options(make_runtime, docker_client):
    runtime = make_runtime("docker", network="none", log_max_size="1m", log_max_files=2)
    spec = make_spec(runtime)
    assert runtime.ensure_running(spec).status == "running"
    attrs = docker_client.containers.get(f"edgeproxy-{spec.name}").attrs
    assert attrs["HostConfig"]["NetworkMode"] == "none"
    assert attrs["HostConfig"]["LogConfig"]["Config"] == {"max-size": "1m", "max-file": "2"}


def test_unknown_network_is_a_clear_error(make_runtime):
    runtime = make_runtime("docker", network=f"no-such-net-{SESSION}")
    spec = make_spec(runtime)
    with pytest.raises(RuntimeError_, match=f"^Docker network no-such-net-{SESSION} does not exist on this host$"):
        runtime.ensure_running(spec)
    assert runtime.observe(spec.name) is None  # nothing left behind


def test_unreachable_engine_is_a_clear_error():
    import docker

    from worker.runtimes.docker import DockerRuntime

    client = docker.DockerClient(base_url="unix:///nonexistent/docker.sock", version="1.41", timeout=2)
    runtime = DockerRuntime(f"rt-{SESSION}-unreachable", client=client)
    with pytest.raises(RuntimeError_, match="not reachable"):
        runtime.ensure_running(make_spec(runtime))
    with pytest.raises(RuntimeError_, match="not reachable"):
        runtime.observe_all()
    with pytest.raises(RuntimeError_, match="not reachable"):
        runtime.facts()


def test_available(monkeypatch, docker_client):
    from worker.runtimes.docker import DockerRuntime

    assert DockerRuntime.available() is True
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert DockerRuntime.available(timeout=0.5) is False


def test_images(runtime, camera_volumes):
    images = runtime.images()
    mine = [i for i in images if i["repository"] == "edgeproxy/camera" and i["tag"] == "test-runtimes"]
    assert len(mine) == 1
    image = mine[0]
    assert image["id"].startswith("sha256:") and image["size"] >= 0
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", image["created"])
