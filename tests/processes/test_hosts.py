"""Each edge worker consumes only its own queue and sees only its own containers."""

import base64
import json

import pytest

pytestmark = pytest.mark.docker


def test_second_edge_worker_gets_only_cameras_placed_on_it(system, rtsp_camera, docker_client, redis_server):
    system.start_edge("edge-b")
    a = system.post("/api/v1/process?wait=30", {"name": "on-a", "rtsp_endpoint": rtsp_camera.url(), "host": "edge-a"})
    b = system.post("/api/v1/process?wait=30", {"name": "on-b", "rtsp_endpoint": rtsp_camera.url(), "host": "edge-b"})
    assert a.status_code == 200 and b.status_code == 200, (a.text, b.text)
    assert a.json()["host"] == "edge-a" and b.json()["host"] == "edge-b"
    assert docker_client.containers.get(a.json()["container_id"]).labels["io.edgeproxy.host"] == "edge-a"
    assert docker_client.containers.get(b.json()["container_id"]).labels["io.edgeproxy.host"] == "edge-b"
    on_b = system.get("/api/v1/processlist?host=edge-b").json()
    assert [c["name"] for c in on_b] == ["on-b"]

    # A camera queued for edge-b while it is down waits in edge-b's queue; edge-a never takes it.
    system.stop_edge("edge-b")
    queued = system.post("/api/v1/process", {"name": "queued-b", "rtsp_endpoint": rtsp_camera.url(), "host": "edge-b"})
    assert queued.status_code == 202, queued.text
    broker = redis_server.client()
    messages = broker.lrange("host.edge-b", 0, -1)
    assert len(messages) == 1
    envelope = json.loads(messages[0])
    assert envelope["headers"]["task"] == "edge.ensure_running"
    args = json.loads(base64.b64decode(envelope["body"]))
    assert args[1]["camera_name"] == "queued-b"
    assert "127.0.0.1" not in json.dumps(args)  # the URL travels sealed, not readable
    assert system.camera("queued-b")["status"] == "pending"

    system.start_edge("edge-b")
    camera = system.wait_camera("queued-b", lambda c: c["status"] == "running", message="running on edge-b")
    assert docker_client.containers.get(camera["container_id"]).labels["io.edgeproxy.host"] == "edge-b"
    assert all(c["host"] == "edge-b" for c in system.get("/api/v1/processlist?host=edge-b").json())


def test_placement_without_host_picks_an_online_host(system, rtsp_camera):
    response = system.post("/api/v1/process", {"name": "placed-cam", "rtsp_endpoint": rtsp_camera.url()})
    assert response.status_code == 202
    online = {h["name"] for h in system.get("/api/v1/hosts").json() if h["online"]}
    assert response.json()["host"] in online
