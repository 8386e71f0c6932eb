"""Real parts for the frame API tests: a Redis of their own (the frame bus and the Celery broker of
the Annotate hand-off), a GStreamer RTSP camera, the real camera process (``python -m
worker.camera``) and the real frame server (``python -m worker.frames``), all as child processes.

The host camera table (``keys.host_cameras(host)``) is written by the edge worker in production
(every heartbeat, from the runtime's view of the camera containers). Here the fixtures write the
entries themselves, because the frame server only knows the cameras listed there (or with a live
status key).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import grpc
import pytest

from tests.support.services import Process, RedisServer, RtspCamera, free_port, wait_port, wait_until
from worker.camera import keys
from worker.frames.proto import video_streaming_pb2 as pb
from worker.frames.proto import video_streaming_pb2_grpc as pb_grpc

HOST = "frames-test-host"
CAMERA = "cam-live"  # real camera process on a live RTSP source, with an RTMP endpoint
DOWN_CAMERA = "cam-down"  # real camera process whose RTSP source does not answer
NO_PROCESS_CAMERA = "cam-noproc"  # in the host table, but no camera process (no status key)
BUFFER_SECONDS = 8
WIDTH, HEIGHT, FPS = 640, 480, 25
# Frames a ring holds: a reader of ``frames()`` may fall this many frames (less one) behind and miss none.
RING_SLOTS = 8
MAX_MESSAGE = 64 * 1024 * 1024
# The shared-memory frame rings of these tests' cameras (read by the frame server and FrameClient).
SHM_DIR = f"/dev/shm/edgeproxy-test-{os.getpid()}"


def table_entry(camera_id: str, has_rtmp: bool, running: bool = True, pid: int = 4242) -> str:
    """A host camera table value as the edge worker writes it (Docker ContainerState keys); ``pid``
    is the camera process's, as the runtime sees it."""
    state = {"Status": "running" if running else "exited", "Running": running, "Paused": False,
             "Restarting": False, "OOMKilled": False, "Dead": False, "Pid": pid if running else 0,
             "ExitCode": 0, "Error": "", "StartedAt": "2026-11-26T12:00:00Z", "FinishedAt": "0001-01-01T00:00:00Z"}
    return json.dumps({"camera_id": camera_id, "status": "running" if running else "stopped", "state": state,
                       "container_id": f"local-{camera_id}", "has_rtmp": has_rtmp})


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = os.environ.get("EDGEPROXY_TEST_ARTIFACTS")
    path = Path(root) / "frames" if root else tmp_path_factory.mktemp("frames")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def frames_redis(workdir):
    server = RedisServer(workdir / "redis")
    yield server
    server.stop()
    shutil.rmtree(SHM_DIR, ignore_errors=True)


@pytest.fixture(scope="module")
def source(workdir):
    camera = RtspCamera(workdir / "rtsp", width=WIDTH, height=HEIGHT, fps=FPS, gop=FPS)
    yield camera
    camera.stop()


@pytest.fixture(scope="module")
def rtmp_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def rtmp_receiver(workdir, rtmp_port):
    """An RTMP server (ffmpeg listening, copying what it gets to a file), up before the camera
    starts so the camera's RTMP output connects at once. None when ffmpeg is not installed."""
    ffmpeg = shutil.which("ffmpeg")
    if not ffmpeg:
        yield None
        return
    output = workdir / "rtmp-received.flv"
    output.unlink(missing_ok=True)
    process = Process([ffmpeg, "-hide_banner", "-loglevel", "warning", "-analyzeduration", "500000",
                       "-probesize", "32768", "-listen", "1", "-f", "flv", "-i", f"rtmp://127.0.0.1:{rtmp_port}/live/x",
                       "-c", "copy", "-flush_packets", "1", "-f", "flv", str(output)],
                      workdir / "rtmp-receiver.log")
    # Not wait_port: ffmpeg -listen 1 serves exactly one connection, a probe would use it up.
    wait_until(lambda: listening(rtmp_port), 10, message="RTMP receiver listening")
    yield output
    process.stop()


def listening(port: int) -> bool:
    """Is a TCP socket listening on ``port`` (from /proc/net/tcp, without connecting to it)?"""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def camera_env(name: str, rtsp_url: str, redis_url: str, rtmp_url: str | None = None) -> dict:
    env = dict(os.environ, EDGEPROXY_CAMERA_NAME=name, EDGEPROXY_CAMERA_ID=name, EDGEPROXY_RTSP_URL=rtsp_url,
               EDGEPROXY_REDIS_URL=redis_url, EDGEPROXY_BUFFER_SECONDS=str(BUFFER_SECONDS), PYTHONUNBUFFERED="1",
               EDGEPROXY_FRAMES_SHM_DIR=SHM_DIR, EDGEPROXY_FRAMES_SHM_SLOTS=str(RING_SLOTS))
    if rtmp_url:
        env["EDGEPROXY_RTMP_URL"] = rtmp_url
    return env


def status_of(client, name: str) -> dict:
    raw = client.get(keys.status(name))
    return json.loads(raw) if raw else {}


@pytest.fixture(scope="module")
def cameras(workdir, frames_redis, source, rtmp_port, rtmp_receiver):
    """The real camera processes, plus their host table entries (the edge worker's job)."""
    client = frames_redis.client()
    table = keys.host_cameras(HOST)
    dead_port = free_port()
    live = Process([sys.executable, "-m", "worker.camera"], workdir / f"camera-{CAMERA}.log",
                   env=camera_env(CAMERA, source.url(), frames_redis.url, f"rtmp://127.0.0.1:{rtmp_port}/live/x"))
    down = Process([sys.executable, "-m", "worker.camera"], workdir / f"camera-{DOWN_CAMERA}.log",
                   env=camera_env(DOWN_CAMERA, f"rtsp://127.0.0.1:{dead_port}/test", frames_redis.url))
    # The process ids as a runtime observes them (the OS's, not made up here).
    client.hset(table, mapping={
        CAMERA: table_entry("1", has_rtmp=True, pid=live.pid),
        DOWN_CAMERA: table_entry("2", has_rtmp=False, pid=down.pid),
        NO_PROCESS_CAMERA: table_entry("3", has_rtmp=False, running=False),
    })
    try:
        wait_until(lambda: status_of(client, CAMERA).get("state") == "streaming", 30,
                   message=f"camera {CAMERA} streaming")
        wait_until(lambda: status_of(client, DOWN_CAMERA), 30, message=f"status of camera {DOWN_CAMERA}")
        yield {"live": live, "down": down}
    finally:
        for process in (live, down):
            process.stop()


def server_env(redis_url: str, port: int, **extra) -> dict:
    env = dict(os.environ, EDGEPROXY_GRPC_PORT=str(port), EDGEPROXY_GRPC_BIND="127.0.0.1",
               EDGEPROXY_FRAMES_REDIS_URL=redis_url, EDGEPROXY_HOST_NAME=HOST, CELERY_BROKER_URL=redis_url,
               PYTHONUNBUFFERED="1", EDGEPROXY_FRAMES_SHM_DIR=SHM_DIR)
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def frame_server(workdir, frames_redis):
    port = free_port()
    process = Process([sys.executable, "-m", "worker.frames"], workdir / "frame-server.log",
                      env=server_env(frames_redis.url, port))
    wait_port(port, 15)
    yield f"127.0.0.1:{port}"
    assert process.alive(), "the frame server died:\n" + process.output()[-3000:]
    process.stop()
    log = process.output()
    assert "Traceback" not in log, log[-3000:]


@pytest.fixture(scope="module")
def stub(frame_server):
    """A client generated from our proto, used directly."""
    channel = grpc.insecure_channel(frame_server, options=[("grpc.max_receive_message_length", MAX_MESSAGE)])
    yield pb_grpc.ImageStub(channel)
    channel.close()


__all__ = ["pb", "HOST", "CAMERA", "DOWN_CAMERA", "NO_PROCESS_CAMERA"]
