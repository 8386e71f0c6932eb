"""Fleet settings and image inventories in process (settings_app: API, services, selectors)."""

from __future__ import annotations

import pytest
from django.test import override_settings

from settings_app.models import EdgeSettings
from tests.fast.test_cameras import connect

SECRET = "edge-Secret-77"


@override_settings(EDGEPROXY_CAMERA_IMAGE="edgeproxy/camera:0.1.0", EDGEPROXY_REGISTRY_URL="")
def test_settings_start_from_the_environment(api):
    body = api.get("/api/v1/settings").json()
    assert body["name"] == "default" and body["camera_image"] == "edgeproxy/camera:0.1.0"
    assert body["edge_key"] is None and body["edge_secret"] is None and body["registry_url"] is None
    assert body["created"] is None
    assert api.get("/api/v1/settings/").json() == body


def test_overwrite_stores_the_secret_encrypted_and_never_answers_it(api):
    response = api.post("/api/v1/settings", {"edge_key": "key-1", "edge_secret": SECRET, "region": "eu"},
                        format="json")
    assert response.status_code == 200, response.content
    assert response.json()["edge_key"] == "key-1" and response.json()["edge_secret"] == "***"
    assert response.json()["region"] == "eu"
    stored = EdgeSettings.objects.get()
    assert stored.edge_secret_encrypted and SECRET not in stored.edge_secret_encrypted
    assert SECRET not in api.get("/api/v1/settings").content.decode()

    # Fields not sent are kept; an empty secret clears it.
    api.post("/api/v1/settings", {"gateway_id": "gw"}, format="json")
    kept = api.get("/api/v1/settings").json()
    assert (kept["edge_key"], kept["region"], kept["gateway_id"], kept["edge_secret"]) == ("key-1", "eu", "gw", "***")
    api.post("/api/v1/settings", {"edge_secret": ""}, format="json")
    assert api.get("/api/v1/settings").json()["edge_secret"] is None


def test_overwrite_route_takes_key_and_secret_from_the_path(api):
    response = api.post(f"/api/v1/settings/overwrite/key-2:{SECRET}", format="json")
    assert response.status_code == 200, response.content
    assert response.json()["edge_key"] == "key-2" and response.json()["edge_secret"] == "***"
    assert api.post("/api/v1/settings/overwrite/-", {"edge_key": "key-3"}, format="json").json()["edge_key"] == "key-3"


@pytest.mark.parametrize("body,field", [
    ({"camera_image": "no tag here"}, "camera_image"),
    ({"camera_image": "edgeproxy/../camera:1"}, "camera_image"),
    ({"registry_url": "ftp://registry.example.com"}, "registry_url"),
    ({"registry_url": "http://user:pw@registry.example.com"}, "registry_url"),
    ({"region": 5}, "region"),
    ({"edge_key": "k" * 256}, "edge_key"),
])
def test_bad_settings_are_400_naming_the_field_and_change_nothing(api, body, field):
    api.post("/api/v1/settings", {"edge_key": "before"}, format="json")
    response = api.post("/api/v1/settings", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"] and field in response.json()["message"]
    assert api.get("/api/v1/settings").json()["edge_key"] == "before"


def test_a_malformed_overwrite_path_is_400(api):
    response = api.post("/api/v1/settings/overwrite/no-colon", format="json")
    assert response.status_code == 400 and "edgeParams" in response.json()["errors"]
    assert not EdgeSettings.objects.exists()


def test_new_cameras_use_the_configured_camera_image(api, online_host, broker):
    api.post("/api/v1/settings", {"camera_image": "registry.local:5000/edgeproxy/camera:0.4.2"}, format="json")
    assert connect(api).json()["image_tag"] == "registry.local:5000/edgeproxy/camera:0.4.2"
    # An image named in the connect wins over the fleet's.
    assert connect(api, "other-cam", image_tag="edgeproxy/camera:0.0.1").json()["image_tag"] == "edgeproxy/camera:0.0.1"


JANUARY, FEBRUARY = "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"
IMAGES = [
    {"repository": "edgeproxy/camera", "tag": "0.0.9", "id": "sha256:a", "size": 10, "created": JANUARY},
    {"repository": "edgeproxy/camera", "tag": "0.0.10", "id": "sha256:b", "size": 11, "created": FEBRUARY},
    {"repository": "edgeproxy/camera", "tag": "latest", "id": "sha256:b", "size": 11, "created": FEBRUARY},
    {"repository": "other/thing", "tag": "1", "id": "sha256:c", "size": 12, "created": ""},
]


@override_settings(EDGEPROXY_CAMERA_IMAGE="edgeproxy/camera:0.0.9", EDGEPROXY_REGISTRY_URL="")
def test_local_image_versions_per_host_in_version_order(api, edge):
    edge.register("edge-a", images=IMAGES)
    edge.register("edge-b", images=[])
    for path in ("/api/v1/settings/dockerimageslocally/edgeproxy/camera",
                 "/api/v1/devicedockerimages?tag=edgeproxy/camera"):
        body = api.get(path).json()
        assert body["name"] == "edgeproxy/camera" and body["camera_type"] == "rtsp"
        assert body["current_version"] == "0.0.10"  # by version, not by text
        assert body["has_upgrade"] is None and body["remote_versions"] is None  # no registry configured
        edge_a, edge_b = body["hosts"]
        assert edge_a["local_versions"] == ["0.0.9", "0.0.10"] and edge_b["has_image"] is False


def test_all_images_one_row_per_host_and_image_id(api, edge):
    edge.register("edge-a", images=IMAGES)
    rows = api.get("/api/v1/alldockerimages").json()
    by_id = {row["Id"]: row for row in rows}
    assert sorted(by_id) == ["sha256:a", "sha256:b", "sha256:c"]
    assert sorted(by_id["sha256:b"]["RepoTags"]) == ["edgeproxy/camera:0.0.10", "edgeproxy/camera:latest"]
    assert by_id["sha256:a"]["Created"] == 1767225600 and by_id["sha256:c"]["Created"] is None


@pytest.mark.parametrize("path", ["/api/v1/devicedockerimages", "/api/v1/devicedockerimages?tag=Bad%20Name",
                                  "/api/v1/settings/dockerimageslocally/bad..name"])
def test_a_bad_image_name_is_400(api, path):
    response = api.get(path)
    assert response.status_code == 400 and "tag" in response.json()["errors"]
