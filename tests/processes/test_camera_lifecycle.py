"""Connect, read, stop, start and delete cameras through HTTP, against real workers and Docker."""

import pytest

pytestmark = pytest.mark.docker


def connect(system, name, url, **extra):
    return system.post("/api/v1/process", {"name": name, "rtsp_endpoint": url, **extra})


def test_connect_is_pending_then_running_in_a_real_container(system, rtsp_camera, docker_client):
    response = connect(system, "lobby-cam", rtsp_camera.url(), host="edge-a")
    assert response.status_code == 202, response.text
    queued = response.json()
    assert queued["status"] == "pending"
    assert queued["operation"]["kind"] == "connect"
    assert queued["host"] == "edge-a"

    camera = system.wait_camera("lobby-cam", lambda c: c["status"] == "running", message="running")
    container = docker_client.containers.get(camera["container_id"])
    assert container.status == "running"
    assert container.labels["io.edgeproxy.camera"] == "lobby-cam"
    assert container.labels["io.edgeproxy.host"] == "edge-a"
    assert camera["state"]["Running"] is True and camera["state"]["Pid"] > 0
    assert camera["operation"]["state"] == "succeeded"
    assert camera["desired_state"] == "running"

    task = system.get(f"/api/v1/tasks/{queued['operation']['id']}")
    assert task.status_code == 200 and task.json()["state"] == "succeeded"


def test_wait_returns_final_record(system, rtsp_camera):
    response = system.post("/api/v1/process?wait=30", {"name": "dock-cam", "rtsp_endpoint": rtsp_camera.url()})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "running"
    assert response.json()["container_id"]


def test_stop_keeps_record_and_start_brings_it_back(system, rtsp_camera, docker_client):
    connected = system.post("/api/v1/process?wait=30", {"name": "yard-cam", "rtsp_endpoint": rtsp_camera.url()})
    assert connected.status_code == 200
    running = system.camera("yard-cam")

    stopped = system.post("/api/v1/process/yard-cam/stop?wait=30")
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["status"] == "stopped"
    assert stopped.json()["desired_state"] == "stopped"
    assert docker_client.containers.get(running["container_id"]).status == "exited"
    assert system.camera("yard-cam")["status"] == "stopped"

    started = system.post("/api/v1/process/startrtsp?wait=30", {"name": "yard-cam"})
    assert started.status_code == 200, started.text
    assert started.json()["status"] == "running"
    assert docker_client.containers.get(started.json()["container_id"]).status == "running"

    # The documented stop route does the same.
    stopped = system.delete("/api/v1/process/stop/yard-cam?wait=30")
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
    started = system.post("/api/v1/process/yard-cam/start?wait=30")
    assert started.status_code == 200 and started.json()["status"] == "running"


def test_delete_removes_container_and_record(system, rtsp_camera, docker_client, redis_server):
    created = system.post("/api/v1/process?wait=30", {"name": "gate-cam", "rtsp_endpoint": rtsp_camera.url()})
    container_id = created.json()["container_id"]

    deleted = system.delete("/api/v1/process/gate-cam?wait=30")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["operation"]["state"] == "succeeded"
    assert system.get("/api/v1/process/gate-cam").status_code == 404
    assert all(c.id != container_id for c in docker_client.containers.list(all=True))
    names = [c["name"] for c in system.get("/api/v1/processlist").json()]
    assert "gate-cam" not in names
    assert not list(redis_server.client().scan_iter("edgeproxy:cam:gate-cam:*"))


def test_list_shows_every_camera_and_filters(system, rtsp_camera):
    for name in ("list-cam-1", "list-cam-2"):
        assert connect(system, name, rtsp_camera.url()).status_code == 202
    listing = system.get("/api/v1/processlist")
    assert listing.status_code == 200
    names = [c["name"] for c in listing.json()]
    assert {"list-cam-1", "list-cam-2"} <= set(names)
    assert names == sorted(names)
    assert all(c["host"] == "edge-a" for c in system.get("/api/v1/processlist?host=edge-a").json())
    assert system.get("/api/v1/processlist?host=nowhere").json() == []
    upgrades = system.get("/api/v1/processupgrades").json()
    assert {"list-cam-1", "list-cam-2"} <= {c["name"] for c in upgrades}
    assert all("upgrade_available" in c for c in upgrades)
    documented = system.get("/api/v1/processupgrades/findrtspupgrades").json()
    assert [c["name"] for c in documented] == [c["name"] for c in upgrades]


def test_info_and_original_routes_agree(system, rtsp_camera):
    connected = system.post("/api/v1/process?wait=30", {"name": "info-cam", "rtsp_endpoint": rtsp_camera.url()})
    assert connected.status_code == 200
    info = system.get("/api/v1/process/info/info-cam")
    original = system.get("/api/v1/process/info-cam")
    assert info.status_code == original.status_code == 200
    assert info.json()["container_id"] == original.json()["container_id"]
    logs = system.wait_camera("info-cam", lambda c: c["logs"]["stdout"] or c["logs"]["stderr"], message="logs")["logs"]
    assert set(logs) == {"stdout", "stderr"}


def test_hosts_are_listed_with_their_facts(system):
    hosts = system.get("/api/v1/hosts").json()
    edge = next(h for h in hosts if h["name"] == "edge-a")
    assert edge["online"] is True
    assert edge["runtime"] == "docker"
    assert edge["queue"] == "host.edge-a"
    assert system.get("/api/v1/hosts/nowhere").status_code == 404
    assert system.get("/api/v1/tasks/00000000-0000-0000-0000-000000000000").status_code == 404
