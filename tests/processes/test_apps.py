"""App processes against real parts (issue 16): the example app (examples/brightness) installed
through the API next to a real RTSP camera on its own edge host, in a real Docker container.

One edge host (``edge-apps``) joins the session's system for this module; the tests share it.
"""

from __future__ import annotations

import base64
import json
import subprocess

import pytest

from edgeproxy.client import FrameClient, NotAuthorized
from tests.support.services import REPO, wait_until

pytestmark = pytest.mark.docker

HOST = "edge-apps"
APP_IMAGE = ("edgeproxy", "example-brightness", "test")
SECRET = "Tok3n-never-shown-77"
# The operator's frame-API key of edge-apps: its frame server requires keys, so the example app's
# annotations arrive only with the key of its own that the edge worker gives it.
OPERATOR_FRAMES_KEY = "operator-frames-key-5f1"


@pytest.fixture(scope="module")
def app_host(system, rtsp_camera, docker_client):
    """edge-apps online with the example app's image, the allow-list entry and a running camera."""
    user, repository, version = APP_IMAGE
    built = subprocess.run([str(REPO / "examples/brightness/build.sh"), f"{user}/{repository}:{version}"],
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    env = {"EDGEPROXY_APP_VOLUMES": built.stdout.strip().splitlines()[-1],
           "EDGEPROXY_GRPC_TOKENS": OPERATOR_FRAMES_KEY, "EDGEPROXY_GRPC_BIND": "127.0.0.1"}
    system.start_edge(HOST, **env)
    system._manage("shell", "-c", "from processes.models import AppImageRule; "
                   f"AppImageRule.objects.get_or_create(repository='{user}/{repository}', "
                   "defaults={'host_network': True})")
    camera = system.post("/api/v1/process?wait=30", {"name": "app-cam", "rtsp_endpoint": rtsp_camera.url(),
                                                     "host": HOST})
    assert camera.status_code == 200 and camera.json()["status"] == "running", camera.text
    try:
        yield env
    finally:
        for container in docker_client.containers.list(all=True, filters={"label": f"io.edgeproxy.app-host={HOST}"}):
            container.remove(force=True)


def install(system, name, wait=30, **fields):
    user, repository, version = APP_IMAGE
    body = {"name": name, "docker_user": user, "docker_repository": repository, "docker_version": version,
            "env_vars": [{"name": "API_TOKEN", "value": SECRET}, {"name": "INTERVAL_SECONDS", "value": "0.5"}],
            "arguments": [], "port_mappings": [], "mount": [{"name": "results", "value": "/results"}],
            "runtime": "", "cameras": ["app-cam"], "host_network": True, **fields}
    return system.post(f"/api/v1/appprocess?wait={wait}", body)


def app(system, name):
    response = system.get(f"/api/v1/appprocess/{name}")
    assert response.status_code == 200, response.text
    return response.json()


def test_example_app_reads_frames_annotates_and_keeps_its_secret(system, app_host, docker_client):
    response = install(system, "bright-app")
    assert response.status_code == 200, response.text
    record = response.json()
    assert record["operation"]["error"] is None, record["operation"]
    assert record["status"] == "running" and record["host"] == HOST and record["cameras"] == ["app-cam"]
    assert record["operation"]["kind"] == "connect" and record["operation"]["state"] == "succeeded"
    assert {"name": "API_TOKEN", "value": "***", "secret": True} in record["env_vars"]

    # Its annotations reach /api/v1/annotations, like any AI program's.
    def annotated():
        found = system.get("/api/v1/annotations?camera=app-cam&type=brightness").json()
        return found if found else None

    events = wait_until(annotated, 30, interval=0.3, message="brightness annotations")
    assert 0 < events[0]["confidence"] <= 1

    # The container: the safe shape, limits, its data folder, the rings read-only, the secret only here.
    container = docker_client.containers.get(record["container_id"])
    config = container.attrs["HostConfig"]
    assert config["Privileged"] is False and "no-new-privileges" in config["SecurityOpt"]
    assert config["NanoCpus"] == 1_000_000_000 and config["Memory"] == 512 * 1024 * 1024
    binds = config["Binds"]
    assert any(b.endswith(":/results:rw") and "/state-edge-apps/apps/bright-app/results:" in b for b in binds)
    assert f"{system.shm_dir}:{system.shm_dir}:ro" in binds
    assert not any("docker.sock" in b for b in binds)
    assert config["GroupAdd"]
    env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
    assert env["API_TOKEN"] == SECRET  # the one place the value may be (docs/apps.md)
    assert env["EDGEPROXY_FRAMES_ADDRESS"] == f"127.0.0.1:{system.frame_ports[HOST]}"
    assert env["EDGEPROXY_CAMERAS"] == "app-cam" and env["EDGEPROXY_FRAMES_SHM_DIR"] == system.shm_dir

    # Its annotations came with its own key: the frame server refuses a call without a key or with
    # another one (the operator's key is not the app's).
    app_key = env["EDGEPROXY_FRAMES_TOKEN"]
    assert app_key and app_key != OPERATOR_FRAMES_KEY
    for key in (None, "not-a-key"):
        with (FrameClient(env["EDGEPROXY_FRAMES_ADDRESS"], token=key, shm_dir="off") as stranger,
              pytest.raises(NotAuthorized)):
            stranger.annotate("app-cam", "brightness", 1)

    # It read its frames the fast way (the shared-memory ring), and its logs reach its record.
    def logs_say_shm():
        stdout = app(system, "bright-app")["logs"]["stderr"] or ""
        text = base64.b64decode(stdout).decode("utf-8", "replace")
        return "via shm" in text and text

    wait_until(logs_say_shm, 30, interval=0.5, message="app logs reporting frames via shm")

    # Its camera stays while it reads it: neither deleted nor moved away from the app (409, nothing changes).
    for refused in (system.delete("/api/v1/process/app-cam"),
                    system.post("/api/v1/process/app-cam/move", {"host": "edge-a"})):
        assert refused.status_code == 409 and refused.json()["apps"] == ["bright-app"], refused.text
    assert system.camera("app-cam")["status"] == "running" and system.camera("app-cam")["host"] == HOST

    # The portal's requests answered with the shapes it reads.
    listed = system.get("/api/v1/appprocesslist").json()
    [mine] = [a for a in listed if a["name"] == "bright-app"]
    for key in ("name", "docker_user", "docker_repository", "docker_version", "env_vars", "arguments",
                "port_mappings", "mount", "runtime", "container_id", "status", "state", "logs", "created",
                "modified", "upgrade_available", "newer_version"):
        assert key in mine, key
    assert mine["state"]["Running"] is True and isinstance(mine["created"], int)

    # /metrics covers apps as it covers cameras.
    metrics = system.get("/metrics").text
    assert 'edgeproxy_app_status{app="bright-app",host="edge-apps",status="running"} 1.0' in metrics

    # The secret is in no answer, no log and no task message the system wrote.
    answers = json.dumps([listed, app(system, "bright-app"), record])
    assert SECRET not in answers
    assert SECRET not in system.logs() and app_key not in answers and app_key not in system.logs()


def test_bad_inputs_are_refused_and_nothing_is_stored(system, app_host, docker_client):
    before = {a["name"] for a in system.get("/api/v1/appprocesslist").json()}
    other = system.post("/api/v1/process", {"name": "elsewhere-cam", "rtsp_endpoint": "rtsp://127.0.0.1:1/x",
                                            "host": "edge-a"})
    assert other.status_code == 202, other.text
    cases = [
        ({"docker_user": "nobody", "docker_repository": "miner"}, 403, "allow-list"),
        ({"mount": [{"name": "/etc", "value": "/etc"}]}, 400, "mount"),
        ({"mount": [{"name": "../x", "value": "/x"}]}, 400, "mount"),
        ({"port_mappings": [{"exposed": 0, "map_to": 80}]}, 400, "port_mappings"),
        ({"cameras": ["no-such-cam"]}, 400, "cameras"),
        ({"cameras": ["app-cam", "elsewhere-cam"]}, 400, "cameras"),
        ({"runtime": "kata"}, 400, "runtime"),
    ]
    for fields, status, word in cases:
        response = install(system, "bad-app", wait=0, **fields)
        assert response.status_code == status, (fields, response.text)
        assert word in response.json()["message"], (fields, response.text)
    assert {a["name"] for a in system.get("/api/v1/appprocesslist").json()} == before
    assert not docker_client.containers.list(all=True, filters={"name": "edgeproxy.app.bad-app"})
    assert system.delete("/api/v1/process/elsewhere-cam?wait=30").status_code == 200

    # A GPU app on a host without GPUs: the operation fails and says why.
    gpu = install(system, "gpu-app", runtime="nvidia")
    assert gpu.status_code == 200, gpu.text
    assert gpu.json()["operation"]["state"] == "failed"
    assert "no NVIDIA GPUs" in gpu.json()["operation"]["error"]
    assert system.delete("/api/v1/appprocess/gpu-app?wait=30").json()["status"] == "deleted"


def test_killed_app_comes_back_survives_a_worker_restart_and_delete_removes_only_it(system, app_host,
                                                                                       docker_client):
    if system.get("/api/v1/appprocess/bright-app").status_code == 404:
        assert install(system, "bright-app").status_code == 200
    idle = install(system, "idle-app", cameras=[], host=HOST)
    assert idle.status_code == 200 and idle.json()["status"] == "running", idle.text
    first = app(system, "bright-app")

    # Removed behind the system's back: reconciliation brings it back.
    docker_client.containers.get(first["container_id"]).remove(force=True)
    seen: list[dict] = []  # what the record said, for the failure message

    def running_again():
        seen.append(app(system, "bright-app"))
        a = seen[-1]
        return a["status"] == "running" and a["container_id"] and a["container_id"] != first["container_id"] and a
    try:
        back = wait_until(running_again, 30, interval=0.3, message="app back")
    except TimeoutError as exc:
        views = [(a["status"], a["container_id"][:12], (a.get("operation") or {}).get("kind"),
                  (a.get("operation") or {}).get("state")) for a in seen]
        raise AssertionError(f"{exc}; the record went {sorted(set(views), key=views.index)}") from None
    assert back["operation"]["kind"] == "reconcile"

    # The edge worker restarts: the container is left running, and the app is still the same one.
    system.stop_edge(HOST)
    system.start_edge(HOST, **app_host)
    assert docker_client.containers.get(back["container_id"]).status == "running"
    after = wait_until(lambda: (a := app(system, "bright-app"))["status"] == "running" and a, 15, interval=0.3,
                       message="app running after restart")
    assert after["container_id"] == back["container_id"]

    # Delete removes its container only: the other app and the camera keep running.
    camera_container = system.camera("app-cam")["container_id"]
    app_key = dict(item.split("=", 1) for item in docker_client.containers.get(after["container_id"]).attrs[
        "Config"]["Env"])["EDGEPROXY_FRAMES_TOKEN"]
    deleted = system.delete("/api/v1/appprocess/bright-app?wait=30")
    assert deleted.status_code == 200 and deleted.json()["status"] == "deleted", deleted.text
    assert not docker_client.containers.list(all=True, filters={"name": "edgeproxy.app.bright-app"})
    assert docker_client.containers.get(idle.json()["container_id"]).status == "running"
    assert docker_client.containers.get(camera_container).status == "running"
    assert system.get("/api/v1/appprocess/bright-app").status_code == 404

    # Its frame-API key went with it: the frame server refuses it (it re-reads the keys file).
    def key_refused():
        with FrameClient(f"127.0.0.1:{system.frame_ports[HOST]}", token=app_key, shm_dir="off") as client:
            try:
                client.annotate("app-cam", "key-check", 1)
            except NotAuthorized:
                return True
            return False

    wait_until(key_refused, 10, interval=0.3, message="the deleted app's frame key refused")
    assert system.delete("/api/v1/appprocess/idle-app?wait=30").status_code == 200
