"""Bad input answers a clear JSON error naming the field, and changes nothing."""

import pytest
import requests

BAD_CONNECTS = [
    ({"rtsp_endpoint": "rtsp://127.0.0.1/x"}, "name"),
    ({"name": "ab", "rtsp_endpoint": "rtsp://127.0.0.1/x"}, "name"),
    ({"name": "x" * 64, "rtsp_endpoint": "rtsp://127.0.0.1/x"}, "name"),
    ({"name": "Upper-Case", "rtsp_endpoint": "rtsp://127.0.0.1/x"}, "name"),
    ({"name": "-starts-with-dash", "rtsp_endpoint": "rtsp://127.0.0.1/x"}, "name"),
    ({"name": "has space", "rtsp_endpoint": "rtsp://127.0.0.1/x"}, "name"),
    ({"name": "dots.not.ok", "rtsp_endpoint": "rtsp://127.0.0.1/x"}, "name"),
    ({"name": "newline\n", "rtsp_endpoint": "rtsp://127.0.0.1/x"}, "name"),
    ({"name": 12345, "rtsp_endpoint": "rtsp://127.0.0.1/x"}, "name"),
    ({"name": "valid-name"}, "rtsp_endpoint"),
    ({"name": "valid-name", "rtsp_endpoint": ""}, "rtsp_endpoint"),
    ({"name": "valid-name", "rtsp_endpoint": "http://127.0.0.1/x"}, "rtsp_endpoint"),
    ({"name": "valid-name", "rtsp_endpoint": "rtsp:///no-host"}, "rtsp_endpoint"),
    ({"name": "valid-name", "rtsp_endpoint": "rtsp://127.0.0.1/a b"}, "rtsp_endpoint"),
    ({"name": "valid-name", "rtsp_endpoint": "rtsp://127.0.0.1/\x07bell"}, "rtsp_endpoint"),
    ({"name": "valid-name", "rtsp_endpoint": "rtsp://127.0.0.1/" + "a" * 2048}, "rtsp_endpoint"),
    ({"name": "valid-name", "rtsp_endpoint": ["rtsp://127.0.0.1/x"]}, "rtsp_endpoint"),
    ({"name": "valid-name", "rtsp_endpoint": "rtsp://127.0.0.1:99999/x"}, "rtsp_endpoint"),
    ({"name": "valid-name", "rtsp_endpoint": "rtsp://127.0.0.1/x", "rtmp_endpoint": "http://x/y"}, "rtmp_endpoint"),
    ({"name": "valid-name", "rtsp_endpoint": "rtsp://127.0.0.1/x", "rtmp_endpoint": 5}, "rtmp_endpoint"),
    ({"name": "valid-name", "rtsp_endpoint": "rtsp://127.0.0.1/x", "image_tag": "no tag here"}, "image_tag"),
    ({"name": "valid-name", "rtsp_endpoint": "rtsp://127.0.0.1/x", "image_tag": "edgeproxy/../camera:1"}, "image_tag"),
    ({"name": "valid-name", "rtsp_endpoint": "rtsp://127.0.0.1/x", "image_tag": "127.0.0.1:5000/../../etc:1"},
     "image_tag"),
    ({"name": "valid-name", "rtsp_endpoint": "rtsp://127.0.0.1/x", "image_tag": "edgeproxy/camera/..:1"}, "image_tag"),
    ({"name": "valid-name", "rtsp_endpoint": "rtsp://127.0.0.1/x", "image_tag": "edgeproxy/./camera:1"}, "image_tag"),
    ({"name": "valid-name", "rtsp_endpoint": "rtsp://127.0.0.1/x", "rtsp_transport": "sctp"}, "rtsp_transport"),
]


def camera_names(system):
    return {c["name"] for c in system.get("/api/v1/processlist").json()}


@pytest.mark.parametrize("body,field", BAD_CONNECTS, ids=[f"{f}-{i}" for i, (_, f) in enumerate(BAD_CONNECTS)])
def test_bad_connect_is_400_naming_the_field_and_stores_nothing(system, body, field):
    before = camera_names(system)
    response = system.post("/api/v1/process", body)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["code"] == 400
    assert field in error["message"]
    assert field in error["errors"]
    assert camera_names(system) == before


def test_connect_to_an_unknown_host_is_404_naming_it_and_stores_nothing(system):
    # A valid request (by the OpenAPI schema) naming a host that does not exist: 404, like the
    # other routes that name a missing host, not 400.
    before = camera_names(system)
    response = system.post("/api/v1/process", {"name": "valid-name", "rtsp_endpoint": "rtsp://127.0.0.1/x",
                                               "host": "no-such-host"})
    assert response.status_code == 404, response.text
    assert "no-such-host" in response.json()["message"] and "host" in response.json()["errors"]
    assert camera_names(system) == before


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b'"a string"', b"null"])
def test_malformed_bodies_are_400(system, raw):
    response = system.post("/api/v1/process", data=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == 400 and response.json()["message"]


def test_oversized_body_is_413(system):
    big = {"name": "big-body", "rtsp_endpoint": "rtsp://127.0.0.1/x", "junk": "x" * 70_000}
    response = system.post("/api/v1/process", big)
    assert response.status_code == 413
    assert response.json()["code"] == 413
    assert "big-body" not in camera_names(system)


def test_unknown_fields_are_ignored(system, rtsp_camera):
    response = system.post("/api/v1/process", {"name": "extra-fields", "rtsp_endpoint": rtsp_camera.url(),
                                               "container_id": "forged", "whatever": {"a": 1}})
    assert response.status_code == 202, response.text
    assert response.json()["container_id"] != "forged"


def test_duplicate_name_is_409_and_keeps_the_first(system, rtsp_camera):
    first = system.post("/api/v1/process", {"name": "twin-cam", "rtsp_endpoint": rtsp_camera.url()})
    assert first.status_code == 202
    second = system.post("/api/v1/process", {"name": "twin-cam", "rtsp_endpoint": "rtsp://10.1.1.1/other"})
    assert second.status_code == 409
    assert second.json()["code"] == 409 and "twin-cam" in second.json()["message"]
    assert system.camera("twin-cam")["rtsp_endpoint"] == rtsp_camera.url()


@pytest.mark.parametrize("method,path", [
    ("GET", "/api/v1/process/no-such-cam"),
    ("GET", "/api/v1/process/info/no-such-cam"),
    ("DELETE", "/api/v1/process/no-such-cam"),
    ("DELETE", "/api/v1/process/stop/no-such-cam"),
    ("POST", "/api/v1/process/no-such-cam/stop"),
    ("POST", "/api/v1/process/no-such-cam/start"),
    ("GET", "/api/v1/nothing-here"),
])
def test_unknown_names_are_404_json(system, method, path):
    response = system.request(method, path)
    assert response.status_code == 404
    assert response.json()["code"] == 404


def test_startrtsp_unknown_name_is_404(system):
    response = system.post("/api/v1/process/startrtsp", {"name": "never-made"})
    assert response.status_code == 404


@pytest.mark.parametrize("wait", ["abc", "-1", "61", "", "1_0", "%205"])
def test_bad_wait_is_400(system, wait):
    response = system.post(f"/api/v1/process?wait={wait}", {"name": "wait-cam", "rtsp_endpoint": "rtsp://h/x"})
    assert response.status_code == 400
    assert "wait" in response.json()["message"]


def test_no_token_is_401_and_read_only_token_cannot_write(system):
    anonymous = requests.get(system.base_url + "/api/v1/processlist", timeout=10)
    assert anonymous.status_code == 401 and anonymous.json()["code"] == 401
    viewer = {"Authorization": f"Token {system.readonly_token}"}
    assert requests.get(system.base_url + "/api/v1/processlist", headers=viewer, timeout=10).status_code == 200
    write = requests.post(system.base_url + "/api/v1/process", headers=viewer, timeout=10,
                          json={"name": "viewer-cam", "rtsp_endpoint": "rtsp://h/x"})
    assert write.status_code == 403
    assert requests.get(system.base_url + "/healthz", timeout=10).status_code == 200


def test_upgrade_routes_without_an_image_to_upgrade_to_answer_409_not_500(system, rtsp_camera):
    system.post("/api/v1/process", {"name": "snap-cam", "rtsp_endpoint": rtsp_camera.url()})
    for method, path, body in [
        ("POST", "/api/v1/processupgrades", {"name": "snap-cam", "newer_version": "9.9.9"}),
        ("POST", "/api/v1/processupgrades/upgradecontainer", {"name": "snap-cam"}),
    ]:
        response = system.request(method, path, json=body)
        assert response.status_code == 409, (path, response.text)
        assert response.json()["message"] and "versions" in response.json()


@pytest.mark.parametrize("image", ["edgeproxy/../camera:1", "127.0.0.1:5000/../x:1", "a//b:1"])
def test_image_references_with_dot_segments_are_refused_everywhere(system, image):
    before = system.get("/api/v1/settings").json()
    for method, path, body, field in (
            ("POST", "/api/v1/settings", {"camera_image": image}, "camera_image"),
            ("POST", "/api/v1/processupgrades", {"name": "no-such-camera", "image_tag": image}, "image_tag")):
        response = system.request(method, path, json=body)
        assert response.status_code == 400, (path, response.text)
        assert field in response.json()["message"] and field in response.json()["errors"]
    assert system.get("/api/v1/settings").json() == before
