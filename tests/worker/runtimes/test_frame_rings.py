"""The shared-memory frame rings of camera processes under both runtimes: the real camera program
(local child process, or a container of the dev image with the ring directory mounted) on a real
GStreamer RTSP camera; the runtime frees a ring when it stops, deletes or finds dead its camera."""

from __future__ import annotations

import os
import signal

import pytest

from tests.support.services import RtspCamera, wait_until
from tests.worker.runtimes.conftest import make_spec, ring_id
from worker.camera import shm


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    camera = RtspCamera(tmp_path_factory.mktemp("rtsp"), width=640, height=480, fps=25, gop=25)
    yield camera
    camera.stop()


def camera_spec(runtime, source, redis_url: str = "redis://127.0.0.1:1/0"):
    # No frame bus needed: the ring is made when the camera program starts.
    return make_spec(runtime, rtsp_url=source.url(), frames_redis_url=redis_url)


def ring_of(ring_dir: str, spec) -> str:
    return os.path.join(ring_dir, shm.ring_name(spec.name, spec.camera_id))


def test_ring_directory_and_files_are_not_world_readable(kind, make_runtime, ring_dir, source):
    runtime = make_runtime(kind)
    spec = camera_spec(runtime, source)
    runtime.ensure_running(spec)
    path = ring_of(ring_dir, spec)
    wait_until(lambda: os.path.exists(path), 30, message="ring made by the camera")
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert os.stat(os.path.join(ring_dir, shm.demand_name(spec.name, spec.camera_id))).st_mode & 0o777 == 0o660
    assert os.stat(ring_dir).st_mode & 0o007 == 0
    runtime.stop(spec.name, timeout=5)
    assert not os.path.exists(path)
    assert os.listdir(ring_dir) == []


def test_connect_delete_cycles_leave_nothing_in_shared_memory(kind, make_runtime, ring_dir, source):
    runtime = make_runtime(kind)
    cycles = 100 if kind == "local" else 20  # a container takes seconds to make and remove
    for _ in range(cycles):
        spec = camera_spec(runtime, source)
        runtime.ensure_running(spec)
        path = ring_of(ring_dir, spec)
        wait_until(lambda p=path: os.path.exists(p), 30, message="ring made by the camera")
        assert runtime.remove(spec.name, timeout=5)
        assert not os.path.exists(path)
    assert os.listdir(ring_dir) == []


def test_a_sigkilled_camera_leaves_nothing_once_the_runtime_notices(kind, make_runtime, ring_dir, source):
    # Local: a long restart delay, so the ring must go while nothing replaces it.
    runtime = make_runtime(kind, restart_delay=30.0) if kind == "local" else make_runtime(kind)
    spec = camera_spec(runtime, source)
    observed = runtime.ensure_running(spec)
    path = ring_of(ring_dir, spec)
    wait_until(lambda: ring_id(path) is not None, 30, message="ring made by the camera")
    first = ring_id(path)
    with open(path, "rb") as held:  # the killed camera's ring file itself, however it is named later
        os.kill(runtime.observe(spec.name).state["Pid"], signal.SIGKILL)
        # The runtime notices (local: its supervisor; Docker: the next observation, as the edge
        # worker's heartbeat does) and frees the ring (Docker restarts the container at once: its
        # new camera makes a new ring under the same name).
        wait_until(lambda: runtime.observe_all() is not None and os.fstat(held.fileno()).st_nlink == 0, 30,
                   message="the killed camera's ring freed")
    if kind == "local":
        assert not os.path.exists(path)
    else:
        assert ring_id(path) != first
    # no stray files (the new camera's demand file is its own)
    assert [f for f in os.listdir(ring_dir)
            if f not in (os.path.basename(path), shm.demand_name(spec.name, spec.camera_id))] == []
    runtime.stop(spec.name, timeout=5)
    assert os.listdir(ring_dir) == []
    assert observed.name == spec.name
