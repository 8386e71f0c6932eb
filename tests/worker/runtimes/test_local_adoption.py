"""The local runtime adopts the camera processes a SIGKILLed edge worker left: the real camera
program on a real GStreamer RTSP camera keeps its process and keeps writing frames while no worker
runs, and the next worker supervises it like its own child (stop, restart after a crash, ring
cleanup). A process that is not provably that camera's is never signalled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid

import pytest

from tests.support.services import REPO, RtspCamera, wait_until
from worker.camera import shm
from worker.runtimes.local import _alive, _proc_stat

from .conftest import PASSWORD, PYTHON, ring_id, unique

# An edge worker: starts the cameras, says their pids, then waits to be SIGKILLed.
_WORKER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {repo!r})
    from worker.runtimes.base import CameraSpec
    from worker.runtimes.local import LocalRuntime
    runtime = LocalRuntime({host!r}, state_dir={state!r}, stop_timeout=5)
    for name, camera_id, url, command in {cameras!r}:
        observed = runtime.ensure_running(CameraSpec(camera_id=camera_id, name=name, host={host!r}, image="x",
                                                     rtsp_url=url, frames_redis_url="redis://127.0.0.1:1/0",
                                                     command=command))
        print(observed.state["Pid"], flush=True)
    time.sleep(3600)
""")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    camera = RtspCamera(tmp_path_factory.mktemp("rtsp"), width=320, height=240, fps=25, gop=25)
    yield camera
    camera.stop()


def ring_of(ring_dir: str, name: str, camera_id: str) -> str:
    return os.path.join(ring_dir, shm.ring_name(name, camera_id))


def run_worker(host: str, state, cameras) -> tuple[subprocess.Popen, list[int]]:
    script = _WORKER.format(repo=str(REPO), host=host, state=str(state), cameras=cameras)
    worker = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    pids = [int(worker.stdout.readline()) for _ in cameras]
    return worker, pids


def test_a_new_worker_adopts_the_cameras_of_a_killed_one(make_runtime, local_state_root, ring_dir, source):
    host = unique("rt-adopt")
    cameras = [(unique("kept"), uuid.uuid4().hex, source.url(), None),
               (unique("crashy"), uuid.uuid4().hex, source.url(), None)]
    rings = [ring_of(ring_dir, name, camera_id) for name, camera_id, _, _ in cameras]
    worker, pids = run_worker(host, local_state_root, cameras)
    try:
        made = [wait_until(lambda r=ring: ring_id(r), 60, message="the camera's ring") for ring in rings]
        processes = [(pid, _proc_stat(pid)[1]) for pid in pids]
        worker.kill()
        assert worker.wait(10) == -signal.SIGKILL
    finally:
        worker.kill()
        worker.stdout.close()
    # With no worker at all, the cameras go on (their output goes to files, not to the dead worker).
    assert all(_alive(pid, start) for pid, start in processes)

    runtime = make_runtime("local", host=host)
    adopted = [runtime.observe(name) for name, _, _, _ in cameras]
    assert [ring_id(ring) for ring in rings] == made, "an adopted camera's ring was freed or replaced"
    for (name, _, _, _), (pid, start) in zip(cameras, processes, strict=True):
        observed = runtime.observe(name)
        assert observed.status == "running" and observed.state["Pid"] == pid
        assert _alive(pid, start), "the camera process was replaced"
        assert runtime.restart_count(name) == 0
        logs = runtime.observe(name).logs
        assert logs["stdout"] or logs["stderr"], "the camera's output before the adoption is lost"
    for name, _, _, _ in cameras:
        camera_dir = runtime.state_dir / name
        for log_file in ("stdout.log", "stderr.log"):
            assert os.stat(camera_dir / log_file).st_mode & 0o777 == 0o600
            assert PASSWORD not in (camera_dir / log_file).read_text(errors="replace")

    # Stop acts on the adopted process and frees its ring.
    (kept, _, _, _), (crashy, _, _, _) = cameras
    stopped = runtime.stop(kept, timeout=5)
    assert stopped.status == "exited" and stopped.state["Pid"] == 0
    assert not _alive(*processes[0])
    assert not os.path.exists(rings[0])

    # An adopted camera that dies is noticed, its ring freed, and it is started again.
    os.kill(processes[1][0], signal.SIGKILL)
    restarted = wait_until(lambda: (o := runtime.observe(crashy)).status == "running"
                           and o.state["Pid"] not in (0, processes[1][0]) and o, 30, message="restart")
    assert runtime.restart_count(crashy) == 1 and restarted.container_id == adopted[1].container_id
    wait_until(lambda: ring_id(rings[1]) not in (None, made[1]), 60, message="the restarted camera's ring")

    # bin/run's stop path: a runtime that does not restore stops what a killed worker left.
    runtime.close()
    worker, (pid,) = run_worker(host, local_state_root, [cameras[1]])
    worker.kill()
    worker.wait(10)
    worker.stdout.close()
    start = _proc_stat(pid)[1]
    assert _alive(pid, start)
    make_runtime("local", host=host, restore=False).close()
    assert not _alive(pid, start)
    assert not os.path.exists(rings[1])


def test_a_process_that_is_not_the_camera_is_never_signalled(make_runtime, local_state_root):
    """A record naming a live process (right pid and start time) that is not that camera's: the
    new worker neither adopts nor kills it, and starts the camera anew."""
    host, name = unique("rt-foreign"), unique("cam")
    sleeper = [PYTHON, "-c", "import time\nwhile True: time.sleep(0.05)"]
    worker, (camera_pid,) = run_worker(host, local_state_root, [(name, "c1", "rtsp://127.0.0.1:9/x", sleeper)])
    foreign = subprocess.Popen(sleeper)
    try:
        worker.kill()
        worker.wait(10)
        worker.stdout.close()
        os.kill(camera_pid, signal.SIGKILL)  # the camera died too; its pid now "belongs" to another
        wait_until(lambda: not _alive(camera_pid, None), 10, message="camera gone")
        record_path = local_state_root / host / name / "record.json"
        record = json.loads(record_path.read_text())
        record.update(pid=foreign.pid, pid_start=_proc_stat(foreign.pid)[1])
        record_path.write_text(json.dumps(record))
        for restore in (False, True):
            runtime = make_runtime("local", host=host, restore=restore)
            assert foreign.poll() is None, "a process that is not the camera's was signalled"
            observed = runtime.observe(name)
            assert observed.state["Pid"] != foreign.pid
            assert observed.status == ("running" if restore else "exited")
            runtime.close()
            record_path.write_text(json.dumps({**json.loads(record_path.read_text()), "status": "running",
                                               "pid": foreign.pid, "pid_start": _proc_stat(foreign.pid)[1]}))
        assert foreign.poll() is None
    finally:
        foreign.kill()
        foreign.wait()
