"""Every operation ends soon, and a camera can always be deleted: the embedded default (SQLite, as
bin/run configures it) with an edge host that goes away in the middle of operations."""

from pathlib import Path

import pytest

from tests.support.services import RedisServer, wait_until
from tests.support.system import System

HOST = "test-deadline-a"
DEADLINE = 6  # EDGEPROXY_OPERATION_DEADLINE_SECONDS of this system


@pytest.fixture(scope="module")
def deadlines(artifacts):
    redis_server = RedisServer(artifacts / "deadlines-redis")
    system = System(artifacts / "deadlines", redis_server.url, None, runtime="local", heartbeat=1.0,
                    extra_env={"EDGEPROXY_OPERATION_DEADLINE_SECONDS": str(DEADLINE)})
    try:
        system.start_edge(HOST)
        yield system
    finally:
        system.stop()
        redis_server.stop()


def camera_processes(system, name: str) -> list[int]:
    """Live camera programs of the local runtime for camera ``name`` of this system."""
    wanted = b"EDGEPROXY_RTSP_URL_FILE="
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"worker.camera" not in (entry / "cmdline").read_bytes():
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        url_files = [v[len(wanted):].decode() for v in environ if v.startswith(wanted)]
        if state != "Z" and url_files and url_files[0].startswith(str(system.workdir)) and \
                Path(url_files[0]).parent.name == name:
            found.append(int(entry.name))
    return found


def task(system, operation_id: str) -> dict:
    response = system.get(f"/api/v1/tasks/{operation_id}")
    assert response.status_code == 200, response.text
    return response.json()


def ended(system, operation_id: str, timeout: float) -> dict:
    return wait_until(lambda: (t := task(system, operation_id))["state"] not in ("pending", "running") and t,
                      timeout, interval=0.2, message=f"operation {operation_id} ended")


def test_operations_of_a_host_that_went_away_end_at_their_deadline_and_delete_always_works(deadlines, rtsp_camera):
    for name in ("dl-kept", "dl-gone"):
        response = deadlines.post("/api/v1/process?wait=30", {"name": name, "rtsp_endpoint": rtsp_camera.url()})
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "running"

    deadlines.stop_edge(HOST)
    stop = deadlines.post("/api/v1/process/dl-gone/stop")
    assert stop.status_code == 202, stop.text
    start = deadlines.post("/api/v1/process/dl-kept/stop")
    assert start.status_code == 202, start.text

    # The camera is busy with a stop nobody will carry out: a delete is still taken at once...
    delete = deadlines.delete("/api/v1/process/dl-gone")
    assert delete.status_code == 202, delete.text
    superseded = task(deadlines, stop.json()["operation"]["id"])
    assert superseded["state"] == "failed"
    assert "superseded by delete operation" in superseded["error"]

    # ...and ends by its deadline: the host is offline, so the record goes (the process is removed
    # when the host returns).
    removal = ended(deadlines, delete.json()["operation"]["id"], DEADLINE + 10)
    assert removal["state"] == "succeeded", removal
    assert f"edge host {HOST} is offline" in removal["message"]
    assert deadlines.get("/api/v1/process/dl-gone").status_code == 404

    # The stop of the other camera ends failed, saying why.
    stopped = ended(deadlines, start.json()["operation"]["id"], DEADLINE + 10)
    assert stopped["state"] == "failed"
    assert f"edge host {HOST} is offline" in stopped["error"], stopped
    assert stopped["finished"] - stopped["created"] < (DEADLINE + 5) * 1000

    # The host returns: the process of the deleted camera goes, the kept camera is stopped as asked.
    assert camera_processes(deadlines, "dl-gone"), "the camera process outlives its edge worker"
    deadlines.start_edge(HOST)
    deadlines.wait_camera("dl-kept", lambda c: c["status"] in ("stopped", "exited") and not (
        c["operation"] and c["operation"]["state"] in ("pending", "running")), timeout=30, message="stopped")
    wait_until(lambda: not camera_processes(deadlines, "dl-gone"), 30, interval=0.3,
               message="process of the deleted camera removed")
    assert deadlines.delete("/api/v1/process/dl-kept?wait=30").status_code == 200
