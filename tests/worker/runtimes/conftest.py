"""Fixtures for the camera runtime tests: a real Docker engine, real child processes, no mocks.

Every Docker container a test makes carries a host label starting with this session's prefix (or
is recorded by name), and the session finalizer removes them all, whatever a test left behind.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import sys
import textwrap
import uuid

import pytest

from tests.support.services import REPO, free_port
from worker.runtimes.base import LABEL_HOST, LABEL_MANAGED, CameraSpec

SESSION = uuid.uuid4().hex[:8]
HOST_PREFIX = f"rt-{SESSION}"
TEST_IMAGE = "edgeproxy/camera:test-runtimes"
PASSWORD = "s3cretpw"
PYTHON = sys.executable  # the venv python; bind-mounted at the same path in the dev image

# Prints 150 numbered lines to stdout, then a URL with a password and the bare password to
# stderr, then waits for SIGTERM.
LOGGER = [PYTHON, "-c", textwrap.dedent(f"""
    import signal, sys, time
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    for i in range(150):
        print(f"line {{i}}", flush=True)
    time.sleep(0.05)
    print("connecting to rtsp://admin:{PASSWORD}@10.0.0.9/live, password {PASSWORD}", file=sys.stderr, flush=True)
    while True:
        time.sleep(0.05)
""")]
# Exits at once with code 3, printing to stdout only.
CRASHER = [PYTHON, "-c", "import sys; print('boom', flush=True); sys.exit(3)"]
# Ignores SIGTERM: only SIGKILL ends it.
STUBBORN = [PYTHON, "-c", textwrap.dedent("""
    import signal, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("ignoring SIGTERM", flush=True)
    while True:
        time.sleep(0.05)
""")]
# Reports how it got its URL: from the file named in EDGEPROXY_RTSP_URL_FILE, never the environment.
URL_PROBE = [PYTHON, "-c", textwrap.dedent("""
    import hashlib, os, signal, stat, sys, time
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    path = os.environ.get("EDGEPROXY_RTSP_URL_FILE", "")
    url = open(path).read() if path else ""
    mode = oct(stat.S_IMODE(os.stat(path).st_mode)) if path else "-"
    print("sha", hashlib.sha256(url.encode()).hexdigest(), "mode", mode,
          "env", "EDGEPROXY_RTSP_URL" in os.environ,
          "name", os.environ.get("EDGEPROXY_CAMERA_NAME"), flush=True)
    while True:
        time.sleep(0.05)
""")]

_counter = iter(range(1, 1_000_000))


def unique(prefix: str) -> str:
    return f"{prefix}-{SESSION}-{next(_counter)}"


def make_spec(runtime, name: str | None = None, command=None, **fields) -> CameraSpec:
    """A camera of ``runtime``'s host whose URL points at a closed port and holds PASSWORD."""
    fields.setdefault("rtsp_url", f"rtsp://admin:{PASSWORD}@127.0.0.1:{free_port()}/stream1")
    fields.setdefault("image", TEST_IMAGE)
    return CameraSpec(camera_id=uuid.uuid4().hex, name=name or unique("cam"), host=runtime.host,
                      command=command, **fields)


@pytest.fixture(scope="session")
def docker_client():
    # A missing engine fails the Docker tests (never skips them): bin/test starts one.
    import docker

    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"no Docker engine answers ({exc}); run the tests with bin/test, which starts one")
    foreign: list[str] = []
    client.edgeproxy_foreign = foreign  # names of unlabelled containers tests create
    yield client
    # Remove everything this session made, and nothing else.
    for container in client.containers.list(all=True, filters={"label": f"{LABEL_MANAGED}=true"}):
        if (container.labels.get(LABEL_HOST) or "").startswith(HOST_PREFIX):
            with contextlib.suppress(Exception):
                container.remove(force=True, v=True)
    for name in foreign:
        with contextlib.suppress(Exception):
            client.containers.get(name).remove(force=True, v=True)
    client.close()


@pytest.fixture(scope="session")
def camera_volumes(docker_client) -> list[str]:
    """Build the dev camera image (FROM scratch, < 1 s) and return the bind mounts it needs."""
    result = subprocess.run([str(REPO / "compose/camera-dev/build.sh"), TEST_IMAGE], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, f"image build failed: {result.stderr[-2000:]}"
    last = [line for line in result.stdout.splitlines() if line.strip()][-1]
    volumes = [v for v in last.strip().split(",") if v]
    assert all(v.count(":") == 2 for v in volumes), last
    return volumes


@pytest.fixture(scope="session")
def local_state_root(tmp_path_factory):
    return tmp_path_factory.mktemp("local-runtime")


@pytest.fixture(scope="session", autouse=True)
def _no_secret_folders_of_test_hosts_left():
    """A Docker runtime makes its host's folder of camera secret folders in the default directory (a
    real host keeps its one folder); the hosts made here, named after ``SESSION``, leave none."""
    yield
    from worker.runtimes.docker import DEFAULT_SECRETS_DIR

    for folder in glob.glob(os.path.join(DEFAULT_SECRETS_DIR, f"*-{SESSION}-*")):
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def make_runtime(request, local_state_root):
    """``make_runtime(kind)`` -> a runtime with a fresh host name; removes its cameras afterwards."""
    made = []

    def factory(kind: str, host: str | None = None, **options):
        host = host or unique(HOST_PREFIX)
        if kind == "docker":
            from worker.runtimes.docker import DockerRuntime

            request.getfixturevalue("docker_client")
            options.setdefault("volumes", request.getfixturevalue("camera_volumes"))
            runtime = DockerRuntime(host, **options)
        else:
            from worker.runtimes.local import LocalRuntime

            options.setdefault("state_dir", local_state_root)
            options.setdefault("stop_timeout", 5.0)
            runtime = LocalRuntime(host, **options)
        made.append(runtime)
        return runtime

    yield factory
    for runtime in made:
        with contextlib.suppress(Exception):
            for observed in runtime.observe_all():
                runtime.remove(observed.name, timeout=1)
        with contextlib.suppress(Exception):
            runtime.close()


@pytest.fixture(params=[pytest.param("docker", marks=pytest.mark.docker), "local"])
def kind(request) -> str:
    return request.param


@pytest.fixture
def runtime(kind, make_runtime):
    return make_runtime(kind)


@pytest.fixture
def ring_dir(monkeypatch):
    """A shared-memory ring directory of the test's own (EDGEPROXY_FRAMES_SHM_DIR; workers inherit it)."""
    path = f"/dev/shm/edgeproxy-rt-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("EDGEPROXY_FRAMES_SHM_DIR", path)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def ring_id(path: str) -> int | None:
    """The id of the ring at ``path`` (the camera makes it at start; frames go in only on demand),
    None if there is no readable ring."""
    from worker.camera import shm

    try:
        reader = shm.FrameRingReader(path)
    except (OSError, shm.RingError):
        return None
    try:
        return reader.ring_id
    finally:
        reader.close()
