"""Bodies and requests the API cannot read: every one answers the JSON error ``{"code", "message"}``
with a 4xx and changes nothing, whether DRF, Django or gunicorn refuses it."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pytest
import requests

BODY_ROUTES = [("POST", "/api/v1/process"), ("POST", "/api/v1/settings"), ("POST", "/api/v1/process/startrtsp"),
               ("POST", "/api/v1/processupgrades"), ("POST", "/api/v1/settings/overwrite/-")]


def nested(depth: int, kind: str) -> str:
    return "[" * depth + "]" * depth if kind == "array" else '{"name":' * depth + "1" + "}" * depth


def assert_json_error(response: requests.Response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    body = response.json()
    assert body["code"] == status and isinstance(body["message"], str) and body["message"], body
    return body


def configured_cameras(system) -> list[dict]:
    """What a request could change about the cameras: which exist, their configuration and their
    last operation (not the live facts that heartbeats refresh meanwhile)."""
    keys = ("name", "rtsp_endpoint", "rtmp_endpoint", "image_tag", "host", "desired_state", "operation")
    return [{k: c.get(k) for k in keys} for c in system.get("/api/v1/processlist").json()]


@pytest.mark.parametrize("kind", ["array", "object"])
def test_deeply_nested_json_is_a_400_and_changes_nothing(system, kind):
    before = (configured_cameras(system), system.get("/api/v1/settings").json())
    for depth in (1000, 5000):  # the audit's 1,000 levels (2 KB), and deeper than any recursion limit
        for method, path in BODY_ROUTES:
            response = system.request(method, path, data=nested(depth, kind),
                                      headers={"Content-Type": "application/json"})
            body = assert_json_error(response, 400)
            assert "JSON" in body["message"], body
    assert (configured_cameras(system), system.get("/api/v1/settings").json()) == before


@pytest.mark.parametrize("data", [b"{", b'{"name": "x",}', b"\xff\xfe{}", b'{"name": NaN}', b"[1, 2"])
def test_unparsable_bodies_are_a_400(system, data):
    response = system.request("POST", "/api/v1/process", data=data, headers={"Content-Type": "application/json"})
    assert_json_error(response, 400)


def test_settings_overwrite_body_must_be_an_object(system):
    before = system.get("/api/v1/settings").json()
    body = assert_json_error(system.post("/api/v1/settings/overwrite/-", [None, None]), 400)
    assert "JSON object" in body["message"]
    assert system.get("/api/v1/settings").json() == before


def test_errors_from_outside_drf_are_json(system):
    # Django: no such route.
    assert_json_error(system.get("/api/v1/no-such-route"), 404)
    # gunicorn: a request line over its 4094-byte limit, headers over its limit.
    assert_json_error(system.get("/api/v1/process/" + "a" * 5000), 414)
    assert_json_error(system.get("/api/v1/hosts", headers={"X-Padding": "b" * 9000}), 431)
    # gunicorn: a request line that is not HTTP (raw socket: no client library sends one).
    address = urlsplit(system.base_url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(b"GET /api/v1/hosts HTTP/9\r\nHost: x\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"Content-Type: application/json" in head, answer[:300]
    assert b'"code": 400' in body
