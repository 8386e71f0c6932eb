"""Secure by default: every route but /healthz needs a token (or an admin session), read-only
tokens read but never change anything, no CORS unless configured, bodies over 64 KiB refused
(chunked ones too), Flower behind basic auth. Routes come from the URLconf, so a new route is
covered the day it is added."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import requests

from tests.edgeproxy.routes import all_routes, api_routes
from tests.support.services import REPO, free_port, wait_until

PUBLIC = {"/healthz"}
LOGIN_PAGES = ("login", "logout")  # pages that answer without a session (admin and dashboard)


def _is_login_page(route) -> bool:
    return any(word in route.name or word in route.template for word in LOGIN_PAGES)


def test_routes_are_enumerated_from_the_urlconf():
    paths = {r.path for r in all_routes()}
    # A smoke check of the enumeration itself: documented, original and new routes are all there.
    for expected in ("/api/v1/process", "/api/v1/processlist", "/api/v1/settings/", "/api/v1/dockerpull",
                     "/api/v1/tasks/00000000-0000-4000-8000-000000000000", "/api/schema/", "/api/docs/",
                     "/swagger/", "/healthz", "/metrics", "/admin/"):
        assert expected in paths
    assert len(api_routes()) >= 25


def test_every_route_without_credentials_is_refused(system):
    checked = 0
    for route in all_routes():
        for method in route.methods:
            response = requests.request(method, system.base_url + route.path, timeout=30, allow_redirects=False,
                                        json={} if method != "get" else None)
            checked += 1
            where = f"{method.upper()} {route.path} -> {response.status_code}"
            if route.path in PUBLIC:
                assert response.status_code in (200, 503), where
            elif route.is_api and route.path.startswith("/api/v1/"):
                assert response.status_code == 401, where
                assert response.json()["code"] == 401 and "Token" in response.json()["message"], where
                assert response.headers["WWW-Authenticate"] == "Token", where
            elif route.path in ("/api/schema/", "/metrics"):
                assert response.status_code == 401, where
                assert response.json()["code"] == 401, where
            elif route.path in ("/api/docs/", "/swagger/"):
                assert response.status_code == 302, where  # a browser goes to the admin login
                assert response.headers["Location"].startswith("/admin/login/?next="), where
            elif _is_login_page(route):
                assert response.status_code in (200, 302, 403, 405), where  # 403: a POST without CSRF token
            else:  # admin and dashboard pages: a redirect to a login page, never the page
                assert response.status_code in (301, 302, 401, 403, 404, 405), where
                if response.status_code in (301, 302):  # to a login page, or a public asset (favicon)
                    location = response.headers["Location"]
                    assert "login" in location or location.startswith("/static/"), where
    assert checked > 60


@pytest.mark.parametrize("header", ["Token not-a-real-token", "Token ", "Bearer abc", "Basic YWRtaW46YWRtaW4="])
def test_bad_credentials_are_401(system, header):
    for path in ("/api/v1/processlist", "/api/v1/hosts", "/api/schema/", "/metrics"):
        response = requests.get(system.base_url + path, headers={"Authorization": header}, timeout=10)
        assert response.status_code == 401, (path, header, response.text)
        assert response.json()["code"] == 401


def test_read_only_token_reads_but_never_writes(system, rtsp_camera):
    """Every read answers a read-only token; every write (and the GET that pulls images) is 403
    and changes nothing."""
    created = system.post("/api/v1/process?wait=30", {"name": "viewer-target", "rtsp_endpoint": rtsp_camera.url()})
    assert created.status_code == 200, created.text
    before = system.get("/api/v1/processlist").json()
    settings_before = system.get("/api/v1/settings").json()
    viewer = {"Authorization": f"Token {system.readonly_token}"}
    reads = writes = 0
    for route in api_routes():
        path = route.path.replace("no-such-name", "viewer-target")
        for method in route.methods:
            body = {"name": "viewer-target", "rtsp_endpoint": "rtsp://127.0.0.1/x", "host": "edge-a",
                    "edge_key": "k", "edge_secret": "viewer-wrote-this"} if method != "get" else None
            response = requests.request(method, system.base_url + path, headers=viewer, json=body, timeout=60)
            where = f"{method.upper()} {path} -> {response.status_code} {response.text[:200]}"
            if route.changes_state(method):
                writes += 1
                assert response.status_code == 403, where
                assert response.json() == {"code": 403, "message": "This token may only read, not change anything."}
            else:
                reads += 1
                assert response.status_code not in (401, 403), where
                assert response.status_code < 500 or response.status_code in (503, 504), where
    assert reads >= 15 and writes >= 12
    after = system.get("/api/v1/processlist").json()
    assert [(c["name"], c["desired_state"], c["operation"]) for c in after] == \
        [(c["name"], c["desired_state"], c["operation"]) for c in before]
    assert system.get("/api/v1/settings").json() == settings_before
    assert system.delete("/api/v1/process/viewer-target?wait=30").status_code == 200


def test_frames_are_readable_with_a_read_only_token(system, rtsp_camera):
    assert system.post("/api/v1/process?wait=30", {"name": "viewer-frames", "rtsp_endpoint": rtsp_camera.url()}
                       ).status_code == 200
    system.wait_camera("viewer-frames", lambda c: (c["stream"] or {}).get("state") == "streaming", 30)
    viewer = {"Authorization": f"Token {system.readonly_token}"}
    frame = wait_until(lambda: (r := requests.get(system.base_url + "/api/v1/process/viewer-frames/frame.jpg",
                                                  headers=viewer, timeout=15)).status_code == 200 and r, 20,
                       interval=0.5, message="a JPEG frame for a read-only token")
    assert frame.headers["Content-Type"] == "image/jpeg" and frame.content[:2] == b"\xff\xd8"
    assert system.delete("/api/v1/process/viewer-frames?wait=30").status_code == 200


def test_cors_is_off_unless_configured(system):
    preflight = requests.options(system.base_url + "/api/v1/processlist", timeout=10, headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization"})
    assert "Access-Control-Allow-Origin" not in preflight.headers
    simple = system.get("/api/v1/processlist", headers={"Origin": "https://evil.example"})
    assert simple.status_code == 200
    assert not [h for h in simple.headers if h.lower().startswith("access-control-")]


def _chunks(data: bytes, size: int = 4096):
    for start in range(0, len(data), size):
        yield data[start:start + size]


def test_chunked_body_over_64_kib_is_413_and_under_it_is_read(system):
    headers = {"Content-Type": "application/json"}
    big = json.dumps({"name": "chunked-big", "rtsp_endpoint": "rtsp://127.0.0.1/x", "junk": "x" * 70_000}).encode()
    response = system.post("/api/v1/process", data=_chunks(big), headers=headers)
    assert response.status_code == 413, response.text
    assert response.json() == {"code": 413, "message": "The request body is larger than 64 KiB."}
    small = json.dumps({"name": "Not Valid", "rtsp_endpoint": "rtsp://127.0.0.1/x"}).encode()
    response = system.post("/api/v1/process", data=_chunks(small, 10), headers=headers)
    assert response.status_code == 400, response.text  # the body was read: the name is named
    assert response.json()["errors"].keys() == {"name"}
    assert "chunked-big" not in {c["name"] for c in system.get("/api/v1/processlist").json()}


def test_browser_hardening_headers(system):
    page = requests.get(system.base_url + "/admin/login/", timeout=10)
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "same-origin"


# --- Flower ------------------------------------------------------------------------------------


def _flower(redis_server, tmp_path, args: list[str], env: dict) -> tuple[subprocess.Popen, int]:
    port = free_port()
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("EDGEPROXY_", "FLOWER_"))},
        "DJANGO_SETTINGS_MODULE": "edgeproxy.settings", "PYTHONPATH": str(REPO), "REDIS_URL": redis_server.url,
        "SECRET_KEY": "test-secret-key-not-for-production", "EDGEPROXY_STATE_DIR": str(tmp_path), **env,
    }
    log = open(tmp_path / f"flower-{port}.log", "wb")  # noqa: SIM115 - Flower's output for its whole life
    process = subprocess.Popen([sys.executable, "-m", "celery", "-A", "edgeproxy.celery", "flower",
                                f"--port={port}", "--address=127.0.0.1", *args],
                               cwd=REPO, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/healthcheck", timeout=2).status_code == 200, 30,
                   interval=0.2, message="flower")
    except Exception:
        process.kill()
        raise
    return process, port


@pytest.mark.parametrize("how", ["--basic-auth (bin/run)", "FLOWER_BASIC_AUTH (compose)"])
def test_flower_needs_basic_auth(redis_server, tmp_path, how):
    if how.startswith("--"):
        process, port = _flower(redis_server, tmp_path, ["--basic-auth=ops:flower-pw-1"], {})
    else:
        process, port = _flower(redis_server, tmp_path, [], {"FLOWER_BASIC_AUTH": "ops:flower-pw-1"})
    try:
        base = f"http://127.0.0.1:{port}"
        for path in ("/", "/workers", "/tasks", "/api/workers", "/api/tasks", "/broker"):
            anonymous = requests.get(base + path, timeout=10)
            assert anonymous.status_code == 401, (path, anonymous.status_code)
            wrong = requests.get(base + path, auth=("ops", "nope"), timeout=10)
            assert wrong.status_code == 401, path
        assert requests.get(base + "/", auth=("ops", "flower-pw-1"), timeout=10).status_code == 200
    finally:
        process.terminate()
        process.wait(10)
