"""Session-wide real parts: Redis, a Docker engine with the locally built camera image, RTSP
cameras, and the running system (API, control worker, one edge worker)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import docker
import pytest

from tests.support.services import REPO, RedisServer, RtspCamera
from tests.support.system import System, fresh_database_url

TEST_IMAGE = "edgeproxy/camera:test"
TEST_LABEL_HOSTS = ("edge-a", "edge-b", "edge-c")


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Path:
    root = os.environ.get("EDGEPROXY_TEST_ARTIFACTS")
    path = Path(root) if root else tmp_path_factory.mktemp("artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def redis_server(artifacts):
    server = RedisServer(artifacts / "redis")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def docker_client():
    client = docker.from_env(timeout=30)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"no Docker engine answers ({exc}); run the tests with bin/test, which starts one")
    yield client
    # Whatever a test left behind on the test hosts: only containers carrying our test labels.
    for container in client.containers.list(all=True, filters={"label": "io.edgeproxy.managed"}):
        if container.labels.get("io.edgeproxy.host", "").startswith(("edge-", "test-")):
            container.remove(force=True)


@pytest.fixture(scope="session")
def camera_image(docker_client):
    """The camera image built locally (no registry): (tag, bind mounts it needs)."""
    result = subprocess.run([str(REPO / "compose/camera-dev/build.sh"), TEST_IMAGE], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return TEST_IMAGE, result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def rtsp_camera(artifacts):
    camera = RtspCamera(artifacts / "cameras")
    yield camera
    camera.stop()


@pytest.fixture(scope="session")
def password_camera(artifacts):
    camera = RtspCamera(artifacts / "cameras", user="admin", password="S3cretPass-9x")
    yield camera
    camera.stop()


@pytest.fixture(scope="session")
def system(artifacts, redis_server, camera_image):
    image, volumes = camera_image
    running = System(artifacts / "system", redis_server.url, fresh_database_url("edgeproxy_it"),
                     camera_image=image, camera_volumes=volumes, runtime="docker")
    try:
        running.start_edge("edge-a")
        yield running
    finally:
        running.stop()
    # A task or request that crashed is a bug even when the test that caused it passed.
    # (django.request logs every deliberate 5xx answer, 501 and 503, at ERROR: those are not crashes.)
    crashes = [line for line in running.logs().splitlines()
               if "Traceback" in line or "Internal Server Error" in line
               or (" ERROR " in line and "django.request" not in line)]
    assert not crashes, "the system logged errors:\n" + "\n".join(crashes[:20])


# --- images and upgrades: a real registry with camera images of three versions ------------------

CAMERA_VERSIONS = ("0.0.9", "0.0.10", "0.0.11")
BROKEN_CAMERA_VERSIONS = ("0.0.11",)  # its camera process exits at once with code 3


@pytest.fixture(scope="session")
def registry(artifacts):
    """Debian's docker-registry on 127.0.0.1:<free port> (plain HTTP), storage in a temporary directory."""
    from tests.support.registry import Registry

    server = Registry(artifacts / "registry")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def camera_versions(docker_client, camera_image, registry):
    """``<registry>/edgeproxy/camera`` 0.0.9, 0.0.10 and a broken 0.0.11, built from the dev camera
    image (each with its own 1 MiB layer), pushed to the registry and kept local."""
    from tests.support.registry import BROKEN_ENTRYPOINT, CameraVersions, build_variant, push, untag

    base, _ = camera_image
    versions = CameraVersions(f"{registry.host}/edgeproxy/camera", CAMERA_VERSIONS, BROKEN_CAMERA_VERSIONS)
    for version in CAMERA_VERSIONS:
        build_variant(docker_client, base, versions.image(version), version,
                      BROKEN_ENTRYPOINT if version in BROKEN_CAMERA_VERSIONS else None)
        push(docker_client, versions.repository, version)
    yield versions
    for version in CAMERA_VERSIONS:
        untag(docker_client, versions.image(version))
