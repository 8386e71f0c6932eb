"""Settings and image routes, documented and original, through HTTP."""

import pytest

pytestmark = pytest.mark.docker


def test_settings_overwrite_stores_secret_encrypted_and_never_returns_it(system):
    for path in ("/api/v1/settings", "/api/v1/settings/"):
        assert system.get(path).status_code == 200
    response = system.post("/api/v1/settings/overwrite/edge-key-1:Edge-Secret-77")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["edge_key"] == "edge-key-1"
    assert body["edge_secret"] == "***"
    assert "Edge-Secret-77" not in system.get("/api/v1/settings").text

    original = system.post("/api/v1/settings", {"edge_key": "edge-key-2", "edge_secret": "Edge-Secret-88"})
    assert original.status_code == 200 and original.json()["edge_key"] == "edge-key-2"
    assert "Edge-Secret-88" not in original.text
    assert system.get("/api/v1/settings/").json()["edge_key"] == "edge-key-2"
    assert "Edge-Secret" not in system.logs()


def test_settings_validation(system):
    assert system.post("/api/v1/settings/overwrite/no-colon").status_code == 400
    bad = system.post("/api/v1/settings", {"edge_key": 5})
    assert bad.status_code == 400 and "edge_key" in bad.json()["message"]
    bad_image = system.post("/api/v1/settings", {"camera_image": "not an image"})
    assert bad_image.status_code == 400


def test_default_camera_image_setting_is_used_by_new_cameras(system, rtsp_camera, camera_image):
    image, _ = camera_image
    assert system.post("/api/v1/settings", {"camera_image": image}).status_code == 200
    assert system.get("/api/v1/settings").json()["camera_image"] == image
    created = system.post("/api/v1/process", {"name": "default-image-cam", "rtsp_endpoint": rtsp_camera.url()})
    assert created.json()["image_tag"] == image


def test_local_images_come_from_host_inventories(system, camera_image):
    image, _ = camera_image
    repository, version = image.split(":")
    for path in (f"/api/v1/settings/dockerimageslocally/{repository}", f"/api/v1/devicedockerimages?tag={repository}"):
        response = system.get(path)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["name"] == repository
        assert body["has_image"] is True
        assert body["highest_remote_version"] is None
        assert any(version in h["local_versions"] for h in body["hosts"])
    assert system.get("/api/v1/devicedockerimages").status_code == 400
    every = system.get("/api/v1/alldockerimages").json()
    assert any(image in row["RepoTags"] for row in every)


def test_pull_of_unreachable_image_fails_cleanly(system):
    response = system.get("/api/v1/dockerpull?tag=edgeproxy/does-not-exist&version=0.0.1&host=edge-a")
    assert response.status_code == 202, response.text
    op = response.json()["operations"][0]
    from tests.support.services import wait_until

    final = wait_until(
        lambda: (t := system.get(f"/api/v1/tasks/{op['id']}").json())["state"] in ("failed", "succeeded") and t,
        90, interval=0.3, message="pull to end")
    assert final["state"] == "failed"
    assert final["error"] and "Traceback" not in final["error"]
    assert system.get("/api/v1/settings/dockerpullimage?host=nowhere").status_code == 404
