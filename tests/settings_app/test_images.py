"""Image inventories, pulls and remote versions through HTTP, against a real registry.

The registry (Debian's docker-registry) holds ``edgeproxy/camera`` 0.0.9, 0.0.10 and a broken
0.0.11; edge-a pulls them through the API and through ``manage.py pull_image``.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import requests

from tests.support.registry import has_image, untag
from tests.support.services import REPO, free_port, wait_until

pytestmark = pytest.mark.docker


def host_entry(system, repository: str, host: str = "edge-a") -> dict:
    body = system.get(f"/api/v1/devicedockerimages?tag={repository}").json()
    return next((h for h in body["hosts"] if h["host"] == host), {"local_versions": [], "images": []})


def wait_local_versions(system, repository: str, expected: list[str]) -> dict:
    return wait_until(lambda: (h := host_entry(system, repository))["local_versions"] == expected and h, 30,
                      interval=0.2, message=f"edge-a to report versions {expected}")


def follow(system, operation_id: str, timeout: float = 120) -> tuple[dict, list[dict]]:
    """Poll GET /tasks/{id} until the operation ends: (final body, every progress seen)."""
    seen = []

    def done():
        task = system.get(f"/api/v1/tasks/{operation_id}").json()
        if task["progress"]:
            seen.append(task["progress"])
        return task["state"] in ("succeeded", "failed") and task

    return wait_until(done, timeout, interval=0.02, message=f"operation {operation_id}"), seen


@pytest.fixture
def only_0_0_9(system, camera_versions, docker_client):
    """edge-a holds 0.0.9 of the registry's camera repository, and no newer version."""
    if not has_image(docker_client, camera_versions.image("0.0.9")):
        docker_client.images.pull(camera_versions.repository, tag="0.0.9")
    for version in ("0.0.10", "0.0.11"):
        untag(docker_client, camera_versions.image(version))
        assert not has_image(docker_client, camera_versions.image(version))
    wait_local_versions(system, camera_versions.repository, ["0.0.9"])
    return camera_versions


def test_pull_through_the_api_shows_rising_progress_and_the_image_becomes_an_upgrade(
        system, only_0_0_9, rtsp_camera, docker_client):
    versions = only_0_0_9
    created = system.post("/api/v1/process", {"name": "up-pull-cam", "rtsp_endpoint": rtsp_camera.url(),
                                              "host": "edge-a", "image_tag": versions.image("0.0.9")})
    assert created.status_code == 202, created.text
    assert created.json()["upgrade_available"] is False

    response = system.get(f"/api/v1/dockerpull?tag={versions.repository}&version=0.0.10&host=edge-a")
    assert response.status_code == 202, response.text
    (queued,) = response.json()["operations"]
    assert queued["kind"] == "pull" and queued["host"] == "edge-a"
    final, seen = follow(system, queued["id"])
    assert final["state"] == "succeeded", final

    progress = final["progress"]
    assert progress["image"] == versions.image("0.0.10")
    assert progress["percent"] == 100.0
    assert progress["bytes_total"] >= 1 << 20 and progress["bytes_done"] == progress["bytes_total"]
    assert progress["layers_total"] >= 2 and progress["layers_done"] == progress["layers_total"]
    counted = [p for p in seen if "bytes_done" in p]
    assert counted, "no progress was recorded"
    for key in ("bytes_done", "layers_done", "seq"):
        values = [p[key] for p in counted]
        assert values == sorted(values), (key, values)  # never goes back
    assert "Downloaded newer image" in final["response"] or "Pull complete" in final["response"]
    assert has_image(docker_client, versions.image("0.0.10"))

    # The inventory has it (sent with the result), with size and date; versions sort as versions.
    entry = wait_local_versions(system, versions.repository, ["0.0.9", "0.0.10"])
    pulled = next(i for i in entry["images"] if i["tag"] == "0.0.10")
    assert pulled["size"] > 1 << 20 and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", pulled["created"])
    assert entry["current_version"] == "0.0.10" and entry["has_image"] is True
    rows = [r for r in system.get("/api/v1/alldockerimages").json()
            if r["Host"] == "edge-a" and versions.image("0.0.10") in r["RepoTags"]]
    assert len(rows) == 1 and rows[0]["Size"] == pulled["size"] and rows[0]["Created"] > 0

    # Every camera listing flags the upgrade, from the host's own images.
    for path in ("/api/v1/processupgrades/findrtspupgrades", "/api/v1/processupgrades", "/api/v1/processlist"):
        camera = next(c for c in system.get(path).json() if c["name"] == "up-pull-cam")
        assert camera["upgrade_available"] is True and camera["newer_version"] == "0.0.10", (path, camera)
    assert system.camera("up-pull-cam")["newer_version"] == "0.0.10"

    # A tag that is not a version is listed, and never newer.
    docker_client.images.get(versions.image("0.0.9")).tag(versions.repository, "nightly")
    try:
        entry = wait_local_versions(system, versions.repository, ["0.0.9", "0.0.10", "nightly"])
        assert entry["current_version"] == "0.0.10"
        assert system.camera("up-pull-cam")["newer_version"] == "0.0.10"
    finally:
        untag(docker_client, f"{versions.repository}:nightly")
    assert system.delete("/api/v1/process/up-pull-cam?wait=30").status_code == 200


def test_pull_from_a_registry_that_is_down_or_of_a_missing_tag_fails_clearly(system, registry, camera_versions):
    dead = f"127.0.0.1:{free_port()}/edgeproxy/camera"
    for path, reason in [
        (f"/api/v1/dockerpull?tag={dead}&version=0.0.10&host=edge-a", "cannot be reached"),
        (f"/api/v1/settings/dockerpullimage?tag={camera_versions.repository}&version=9.9.9&host=edge-a",
         "does not exist"),
        (f"/api/v1/dockerpull?tag={camera_versions.repository}:9.9.8&host=edge-a", "does not exist"),
    ]:
        response = system.get(path)
        assert response.status_code == 202, (path, response.text)
        final, _ = follow(system, response.json()["operations"][0]["id"])
        assert final["state"] == "failed", final
        assert reason in final["error"], final["error"]
        assert "Traceback" not in final["error"] and "http+docker" not in final["error"]

    for path, field in [("/api/v1/dockerpull?tag=Not%20An%20Image&version=1", "tag"),
                        ("/api/v1/dockerpull?tag=edgeproxy/camera&version=bad%20tag", "version"),
                        ("/api/v1/devicedockerimages?tag=%2F%2F%2F", "tag")]:
        response = system.get(path)
        assert response.status_code == 400, (path, response.text)
        assert field in response.json()["errors"]
    assert system.get("/api/v1/dockerpull?tag=edgeproxy/camera&version=1&host=nowhere").status_code == 404
    # Another repository without a version: latest, as `docker pull` does (no registry here: it fails).
    other = system.get("/api/v1/dockerpull?tag=someone/else&host=edge-a")
    assert other.status_code == 202, other.text
    assert other.json()["operations"][0]["progress"]["image"] == "someone/else:latest"
    final, _ = follow(system, other.json()["operations"][0]["id"])
    assert final["state"] == "failed", final


def test_remote_versions_come_from_the_configured_registry_and_are_null_when_it_is_down(
        system, registry, camera_versions):
    repository = camera_versions.repository
    try:
        assert system.post("/api/v1/settings", {"registry_url": registry.url}).status_code == 200
        assert system.get("/api/v1/settings").json()["registry_url"] == registry.url
        for path in (f"/api/v1/settings/dockerimageslocally/{repository}",
                     f"/api/v1/devicedockerimages?tag={repository}"):
            body = system.get(path).json()
            assert body["highest_remote_version"] == "0.0.11", body
            assert body["remote_versions"] == ["0.0.9", "0.0.10", "0.0.11"]
            edge_a = next(h for h in body["hosts"] if h["host"] == "edge-a")
            assert edge_a["highest_remote_version"] == "0.0.11"
            assert edge_a["has_upgrade"] is (edge_a["current_version"] != "0.0.11")
        # A repository without a registry host is looked up in the configured registry.
        images = system.get("/api/v1/devicedockerimages?tag=edgeproxy/camera").json()
        assert images["highest_remote_version"] == "0.0.11"
        unknown = system.get("/api/v1/devicedockerimages?tag=edgeproxy/unknown").json()
        assert unknown["highest_remote_version"] is None and unknown["has_upgrade"] is False

        # Another registry than the configured one is not asked; a registry that is down: null.
        other = system.get(f"/api/v1/devicedockerimages?tag=127.0.0.1:{free_port()}/edgeproxy/camera").json()
        assert other["highest_remote_version"] is None and other["has_upgrade"] is None
        assert system.post("/api/v1/settings", {"registry_url": f"http://127.0.0.1:{free_port()}"}).status_code == 200
        down = system.get(f"/api/v1/devicedockerimages?tag={repository}")
        assert down.status_code == 200
        assert down.json()["highest_remote_version"] is None and down.json()["has_upgrade"] is None

        for bad in ("ftp://x", "http://user:pw@registry:5000", "not a url", "http://h/v2/"):
            response = system.post("/api/v1/settings", {"registry_url": bad})
            assert response.status_code == 400 and "registry_url" in response.json()["errors"], bad
    finally:
        assert system.post("/api/v1/settings", {"registry_url": ""}).status_code == 200
    assert system.get(f"/api/v1/devicedockerimages?tag={repository}").json()["highest_remote_version"] is None


def _pull_command(system, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", "pull_image", *args], cwd=REPO, env=system.env,
                          capture_output=True, text=True, timeout=180)


def test_pull_image_command_shows_a_progress_bar_and_exit_codes(system, camera_versions, docker_client):
    image = camera_versions.image("0.0.11")
    untag(docker_client, image)
    assert not has_image(docker_client, image)

    result = _pull_command(system, image, "--host", "edge-a")
    assert result.returncode == 0, result.stderr
    bars = [line for line in result.stdout.splitlines() if line.startswith("edge-a")]
    assert bars and re.search(r"\[#{30}\] 100\.0%", bars[-1]), result.stdout
    assert "succeeded" in bars[-1] and f"pulled {image}" in result.stdout
    assert has_image(docker_client, image)

    down = _pull_command(system, f"127.0.0.1:{free_port()}/edgeproxy/camera", "--tag", "0.0.10", "--host", "edge-a")
    assert down.returncode != 0
    assert "cannot be reached" in down.stderr and "Traceback" not in down.stderr
    missing = _pull_command(system, camera_versions.repository + ":9.9.9", "--host", "edge-a")
    assert missing.returncode != 0 and "does not exist" in missing.stderr
    nowhere = _pull_command(system, image, "--host", "nowhere")
    assert nowhere.returncode != 0 and "nowhere" in nowhere.stderr


def test_camera_image_and_registry_are_editable_in_the_admin(system, camera_versions):
    password = "admin-pw-Up-1"
    system._manage("create_api_token", "up-admin", "--superuser", "--password", password)
    browser = requests.Session()
    login_url = system.base_url + "/admin/login/"
    page = browser.get(login_url, timeout=10)
    assert page.status_code == 200
    logged_in = browser.post(login_url, data={"username": "up-admin", "password": password, "next": "/admin/",
                                              "csrfmiddlewaretoken": browser.cookies["csrftoken"]},
                             headers={"Referer": login_url}, timeout=10)
    assert logged_in.status_code == 200 and "logout" in logged_in.text.lower()

    current = system.get("/api/v1/settings").json()
    previous = current["camera_image"]
    system.post("/api/v1/settings", {"camera_image": previous})  # the settings row exists
    kept = {field: current[field] or "" for field in ("edge_key", "project_id", "region", "registry_id", "gateway_id")}
    changelist = browser.get(system.base_url + "/admin/settings_app/edgesettings/", timeout=10)
    assert changelist.status_code == 200
    change_path = re.search(r'href="(/admin/settings_app/edgesettings/\d+/change/)"', changelist.text).group(1)
    form = browser.get(system.base_url + change_path, timeout=10)
    assert form.status_code == 200 and 'name="camera_image"' in form.text and 'name="registry_url"' in form.text

    def save(camera_image: str, registry_url: str) -> requests.Response:
        return browser.post(system.base_url + change_path, timeout=10,
                            headers={"Referer": system.base_url + change_path},
                            data={"csrfmiddlewaretoken": browser.cookies["csrftoken"], "name": "default", **kept,
                                  "camera_image": camera_image, "registry_url": registry_url, "edge_secret": ""})

    try:
        bad = save("not an image", "")
        assert bad.status_code == 200 and "repository:version" in bad.text  # the form again, with the error
        assert system.get("/api/v1/settings").json()["camera_image"] == previous
        saved = save(camera_versions.image("0.0.10"), "")
        assert saved.status_code == 200 and saved.url.endswith("/admin/settings_app/edgesettings/")
        assert system.get("/api/v1/settings").json()["camera_image"] == camera_versions.image("0.0.10")
    finally:
        system.post("/api/v1/settings", {"camera_image": previous})
