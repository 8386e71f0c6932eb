"""Camera upgrades through HTTP: a real registry's images on a real Docker engine, real cameras.

Every camera here is named ``up-...`` and runs on ``edge-a`` (Docker runtime).
"""

from __future__ import annotations

import shutil
import uuid

import docker.errors
import pytest

from tests.support.registry import has_image
from tests.support.services import free_port, wait_until
from worker.runtimes.base import LABEL_CAMERA, CameraSpec, RuntimeError_

pytestmark = pytest.mark.docker

UPGRADE = "/api/v1/processupgrades/upgradecontainer"
UPGRADE_ORIGINAL = "/api/v1/processupgrades"


def streaming(camera: dict) -> bool:
    return bool(camera["stream"]) and camera["stream"]["state"] == "streaming"


def local_versions(system, repository: str, host: str = "edge-a") -> list[str]:
    body = system.get(f"/api/v1/devicedockerimages?tag={repository}").json()
    return next((h["local_versions"] for h in body["hosts"] if h["host"] == host), [])


def finished(system, operation_id: str, timeout: float = 120) -> dict:
    def done():
        task = system.get(f"/api/v1/tasks/{operation_id}").json()
        return task["state"] in ("succeeded", "failed") and task

    return wait_until(done, timeout, interval=0.2, message=f"operation {operation_id} to end")


def containers_of(docker_client, camera: str) -> list:
    return docker_client.containers.list(all=True, filters={"label": f"{LABEL_CAMERA}={camera}"})


@pytest.fixture(scope="module")
def versions(system, camera_versions, docker_client):
    """0.0.9, 0.0.10 and the broken 0.0.11 local on edge-a and in its image inventory."""
    for version in camera_versions.versions:
        if not has_image(docker_client, camera_versions.image(version)):
            docker_client.images.pull(camera_versions.repository, tag=version)
    wait_until(lambda: set(camera_versions.versions) <= set(local_versions(system, camera_versions.repository)),
               30, interval=0.3, message="edge-a to report the camera versions")
    return camera_versions


def connect(system, name: str, url: str, image: str) -> dict:
    response = system.post("/api/v1/process?wait=30", {"name": name, "rtsp_endpoint": url, "host": "edge-a",
                                                       "image_tag": image})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "running", response.json()
    return response.json()


def test_upgrade_a_streaming_camera_then_a_broken_version_rolls_back(system, rtsp_camera, versions, docker_client):
    name = "up-stream-cam"
    connect(system, name, rtsp_camera.url(), versions.image("0.0.9"))
    before = system.wait_camera(name, streaming, timeout=30, message="streaming on 0.0.9")
    assert before["upgrade_available"] is True and before["newer_version"] == "0.0.11"  # the highest local

    upgraded = system.post(UPGRADE + "?wait=60", {"name": name, "newer_version": "0.0.10"})
    assert upgraded.status_code == 200, upgraded.text
    body = upgraded.json()
    assert body["operation"]["kind"] == "upgrade"
    assert body["operation"]["state"] == "succeeded", body["operation"]
    assert body["image_tag"] == versions.image("0.0.10")
    new_id = body["container_id"]
    assert new_id and new_id != before["container_id"]
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(before["container_id"])  # the old container is gone
    container = docker_client.containers.get(new_id)
    assert container.name == f"edgeproxy-{name}" and container.status == "running"
    assert container.attrs["Config"]["Image"] == versions.image("0.0.10")
    assert [c.id for c in containers_of(docker_client, name)] == [new_id]
    task = system.get(f"/api/v1/tasks/{body['operation']['id']}").json()
    assert task["image"] == versions.image("0.0.10") and task["previous_image"] == versions.image("0.0.9")
    assert task["replaced_container_id"] == before["container_id"]
    assert task["progress"]["phase"] == "done"

    on_new = system.wait_camera(
        name, lambda c: streaming(c) and c["container_id"] == new_id and c["stream"]["started_at"] >= task["created"],
        timeout=30, message="streaming on 0.0.10")
    assert on_new["image_tag"].endswith(":0.0.10")
    assert on_new["newer_version"] == "0.0.11"

    # The broken version, through the original route with a whole StreamProcess as the body.
    failed = system.post(UPGRADE_ORIGINAL + "?wait=60", {**on_new, "newer_version": "0.0.11"})
    assert failed.status_code == 200, failed.text
    op = failed.json()["operation"]
    assert op["kind"] == "upgrade" and op["state"] == "failed", op
    assert "0.0.11" in op["error"] and "exited with code 3" in op["error"], op["error"]
    assert "runs again on" in op["error"] and "old container" in op["error"]
    assert failed.json()["image_tag"] == versions.image("0.0.10")  # the record is unchanged
    assert failed.json()["container_id"] == new_id  # restored: the same container

    back = system.wait_camera(
        name, lambda c: streaming(c) and c["stream"]["started_at"] >= op["created"], timeout=30,
        message="streaming again on 0.0.10")
    assert back["container_id"] == new_id and back["image_tag"] == versions.image("0.0.10")
    assert [c.id for c in containers_of(docker_client, name)] == [new_id]
    restored = docker_client.containers.get(new_id)
    assert restored.status == "running" and restored.name == f"edgeproxy-{name}"
    assert restored.attrs["Config"]["Image"] == versions.image("0.0.10")
    task = system.get(f"/api/v1/tasks/{op['id']}").json()
    assert task["rejected_image"] == versions.image("0.0.11") and task["progress"]["phase"] == "rolled back"

    assert system.delete(f"/api/v1/process/{name}?wait=30").status_code == 200
    assert containers_of(docker_client, name) == []


def test_upgrade_of_a_camera_whose_source_is_down_waits_for_steady_running_and_blocks_delete(
        system, versions, docker_client):
    name = "up-dark-cam"
    before = connect(system, name, f"rtsp://127.0.0.1:{free_port()}/nothing-here", versions.image("0.0.9"))

    started = system.post(UPGRADE, {"name": name, "newer_version": "0.0.10"})
    assert started.status_code == 202, started.text
    op = started.json()["operation"]
    assert op["kind"] == "upgrade" and op["state"] in ("pending", "running")

    busy = system.delete(f"/api/v1/process/{name}")
    assert busy.status_code == 409, busy.text
    assert "upgrade" in busy.json()["message"]
    assert system.post(UPGRADE, {"name": name, "newer_version": "0.0.10"}).status_code == 409
    assert system.camera(name)["image_tag"] == versions.image("0.0.9")  # nothing changes before success

    task = finished(system, op["id"])
    assert task["state"] == "succeeded", task
    assert task["finished"] - task["started"] >= 9_000  # EDGEPROXY_UPGRADE_STEADY_SECONDS: 10 s by default
    camera = system.camera(name)
    assert camera["image_tag"] == versions.image("0.0.10")
    assert camera["container_id"] != before["container_id"] and camera["status"] == "running"
    assert [c.id for c in containers_of(docker_client, name)] == [camera["container_id"]]

    # Without a version: the newest local one (0.0.11), which is broken: back on 0.0.10.
    newest = system.post(UPGRADE_ORIGINAL + "?wait=60", {"name": name})
    assert newest.status_code == 200, newest.text
    op = newest.json()["operation"]
    assert op["state"] == "failed" and "0.0.11" in op["error"], op
    assert newest.json()["image_tag"] == versions.image("0.0.10")
    assert newest.json()["container_id"] == camera["container_id"]

    deleted = system.delete(f"/api/v1/process/{name}?wait=30")
    assert deleted.status_code == 200, deleted.text
    assert containers_of(docker_client, name) == []


def test_upgrade_to_a_version_not_on_the_host_answers_409_with_the_versions_there(system, rtsp_camera, versions):
    name = "up-missing-cam"
    before = connect(system, name, rtsp_camera.url(), versions.image("0.0.9"))

    missing = system.post(UPGRADE, {"name": name, "newer_version": "7.7.7"})
    assert missing.status_code == 409, missing.text
    body = missing.json()
    assert body["code"] == 409
    assert body["versions"] == ["0.0.9", "0.0.10", "0.0.11"]  # in version order
    assert "7.7.7" in body["message"] and "0.0.10" in body["message"]
    same = system.post(UPGRADE_ORIGINAL, {"name": name, "newer_version": "0.0.9"})
    assert same.status_code == 409 and "already runs" in same.json()["message"]

    for bad, field in [({"name": name, "newer_version": "not a tag!"}, "newer_version"),
                       ({"newer_version": "0.0.10"}, "name"),
                       ({"name": name, "newer_version": 10}, "newer_version"),
                       ({"name": name, "image_tag": "no image"}, "image_tag")]:
        response = system.post(UPGRADE, bad)
        assert response.status_code == 400, (bad, response.text)
        assert field in response.json()["errors"]
    assert system.post(UPGRADE, {"name": "up-nobody", "newer_version": "0.0.10"}).status_code == 404
    after = system.camera(name)
    assert after["image_tag"] == versions.image("0.0.9")
    assert after["operation"]["id"] == before["operation"]["id"]  # no operation was made

    assert system.post(f"/api/v1/process/{name}/stop?wait=30").status_code == 200
    stopped = system.post(UPGRADE, {"name": name, "newer_version": "0.0.10"})
    assert stopped.status_code == 409 and "stopped" in stopped.json()["message"]
    assert system.delete(f"/api/v1/process/{name}?wait=30").status_code == 200


def test_the_runtime_shows_one_container_per_camera_while_replacing(docker_client, camera_image, versions, tmp_path,
                                                                    request):
    """The Docker runtime's side-by-side replacement, directly: set aside, redelivered, rolled back,
    committed; observe_all() never shows two containers of one camera. The local runtime refuses."""
    from worker.runtimes.docker import DockerRuntime, replaced_name
    from worker.runtimes.local import LocalRuntime

    _, volumes = camera_image
    host = f"test-up-{uuid.uuid4().hex[:6]}"
    runtime = DockerRuntime(host, client=docker_client, volumes=volumes.split(","), stop_timeout=2)
    request.addfinalizer(lambda: runtime.secrets_dir and shutil.rmtree(runtime.secrets_dir, ignore_errors=True))
    sleeper = ["python", "-c", "import time; time.sleep(600)"]

    def spec(version: str) -> CameraSpec:
        return CameraSpec(camera_id="c-1", name="up-rt-cam", host=host, image=versions.image(version),
                          rtsp_url="rtsp://user:pw-up-1@127.0.0.1:9/x", command=sleeper)

    first = runtime.ensure_running(spec("0.0.9"))
    swap = runtime.begin_replace(spec("0.0.10"))
    assert swap["old"].container_id == first.container_id
    assert [o.container_id for o in runtime.observe_all()] == [swap["new"].container_id]
    assert docker_client.containers.get(replaced_name("up-rt-cam")).id == first.container_id

    again = runtime.begin_replace(spec("0.0.10"))  # a redelivered upgrade: the first attempt is undone first
    assert again["old"].container_id == first.container_id
    assert len(containers_of(docker_client, "up-rt-cam")) == 2
    assert [o.container_id for o in runtime.observe_all()] == [again["new"].container_id]

    # A worker that died mid-upgrade: the next start of the camera (one listing finds both names)
    # puts the old container back in place of the new one.
    resumed = runtime.ensure_running(spec("0.0.9"))
    assert resumed.container_id == first.container_id and resumed.status == "running"
    assert [c.id for c in containers_of(docker_client, "up-rt-cam")] == [first.container_id]

    restored = runtime.rollback_replace("up-rt-cam")
    assert restored.container_id == first.container_id and restored.status == "running"
    assert [c.id for c in containers_of(docker_client, "up-rt-cam")] == [first.container_id]
    assert runtime.rollback_replace("up-rt-cam").container_id == first.container_id  # idempotent

    swap = runtime.begin_replace(spec("0.0.10"))
    runtime.commit_replace("up-rt-cam")
    runtime.commit_replace("up-rt-cam")  # idempotent
    assert [c.id for c in containers_of(docker_client, "up-rt-cam")] == [swap["new"].container_id]
    assert runtime.begin_replace(spec("0.0.10"))["old"] is None  # already done
    with pytest.raises(RuntimeError_, match="not on this host"):
        runtime.begin_replace(spec("9.9.9"))
    assert runtime.remove("up-rt-cam") is True
    assert containers_of(docker_client, "up-rt-cam") == []

    local = LocalRuntime("test-up-local", state_dir=tmp_path)
    try:
        with pytest.raises(RuntimeError_, match="upgrades need the Docker runtime"):
            local.begin_replace(spec("0.0.10"))
    finally:
        local.close()
