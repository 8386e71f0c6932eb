"""The real camera program under both runtimes: connect through the API, see the stream live."""

import pytest

from tests.support.system import System, fresh_database_url


def streaming(camera: dict) -> bool:
    return bool(camera["stream"]) and camera["stream"]["state"] == "streaming"


@pytest.mark.docker
def test_docker_camera_reports_streaming(system, rtsp_camera):
    response = system.post("/api/v1/process?wait=30", {"name": "live-docker", "rtsp_endpoint": rtsp_camera.url()})
    assert response.status_code == 200, response.text
    camera = system.wait_camera("live-docker", streaming, timeout=30, message="stream streaming")
    stream = camera["stream"]
    assert (stream["width"], stream["height"]) == (rtsp_camera.width, rtsp_camera.height)
    assert stream["codec"] in ("h264", "H264")
    assert camera["rtmp_stream_status"] == {"streaming": False, "storing": False}


@pytest.fixture(scope="module")
def local_system(artifacts, redis_server):
    """A second system whose edge host runs cameras as local child processes (no Docker)."""
    redis_url = redis_server.url.rsplit("/", 1)[0] + "/3"
    running = System(artifacts / "system-local", redis_url, fresh_database_url("edgeproxy_it_local"), runtime="local")
    try:
        running.start_edge("edge-local")
        yield running
    finally:
        running.stop()
    assert "Traceback" not in running.logs()


def test_local_runtime_runs_the_same_lifecycle(local_system, rtsp_camera):
    created = local_system.post("/api/v1/process?wait=30", {"name": "local-cam", "rtsp_endpoint": rtsp_camera.url()})
    assert created.status_code == 200, created.text
    camera = created.json()
    assert camera["status"] == "running"
    assert camera["state"]["Running"] is True and camera["state"]["Pid"] > 0
    assert local_system.get("/api/v1/hosts/edge-local").json()["runtime"] == "local"

    camera = local_system.wait_camera("local-cam", streaming, timeout=30, message="stream streaming")
    assert (camera["stream"]["width"], camera["stream"]["height"]) == (rtsp_camera.width, rtsp_camera.height)

    stopped = local_system.post("/api/v1/process/local-cam/stop?wait=30")
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
    started = local_system.post("/api/v1/process/local-cam/start?wait=30")
    assert started.status_code == 200 and started.json()["status"] == "running"
    assert started.json()["state"]["Pid"] != camera["state"]["Pid"]
    deleted = local_system.delete("/api/v1/process/local-cam?wait=30")
    assert deleted.status_code == 200
    assert local_system.get("/api/v1/process/local-cam").status_code == 404


@pytest.mark.docker
def test_jpeg_snapshot_of_a_streaming_camera(system, rtsp_camera):
    import cv2
    import numpy as np

    system.post("/api/v1/process?wait=30", {"name": "snap-live", "rtsp_endpoint": rtsp_camera.url()})
    system.wait_camera("snap-live", streaming, timeout=30, message="stream streaming")
    response = system.get("/api/v1/process/snap-live/frame.jpg")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (rtsp_camera.height, rtsp_camera.width, 3)
    keyframe = system.get("/api/v1/process/snap-live/frame.jpg?keyframe=true")
    assert keyframe.status_code == 200
    assert system.get("/api/v1/process/no-such-cam/frame.jpg").status_code == 404


@pytest.mark.docker
def test_snapshot_of_a_camera_that_is_down_is_503(system):
    system.post("/api/v1/process?wait=30", {"name": "snap-dead", "rtsp_endpoint": "rtsp://127.0.0.1:9/none"})
    response = system.get("/api/v1/process/snap-dead/frame.jpg")
    assert response.status_code == 503, response.text
    assert response.json()["code"] == 503
