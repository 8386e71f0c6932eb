"""Who may call the API, for every API route of the URLconf (a route added later is covered too):
nobody without a token (401), read-only tokens read but never change anything (403)."""

from __future__ import annotations

import pytest
from django.test import override_settings

from processes.models import Camera, Operation
from settings_app.models import EdgeSettings
from tests.edgeproxy.routes import api_routes
from tests.fast.test_cameras import connect

API_V1 = [route for route in api_routes() if route.path.startswith("/api/v1/")]
CALLS = [(method, route.path) for route in API_V1 for method in route.methods]
WRITES = [(method, route.path) for route in API_V1 for method in route.methods if route.changes_state(method)]
READS = [(method, route.path) for route in API_V1 for method in route.methods if not route.changes_state(method)]


def test_the_route_tables_are_not_empty():
    assert len(CALLS) >= 30 and len(WRITES) >= 12 and len(READS) >= 12
    assert ("get", "/api/v1/dockerpull") in WRITES  # a GET that pulls images


@pytest.mark.parametrize("method,path", CALLS, ids=[f"{m} {p}" for m, p in CALLS])
def test_no_token_is_401(anonymous_api, method, path):
    response = getattr(anonymous_api, method)(path, {} if method != "get" else None, format="json")
    assert response.status_code == 401, response.content
    assert response.json()["code"] == 401 and "Token" in response.json()["message"]
    assert response["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize("token", ["Token wrong", "Token " + "a" * 64, "Token \xe9t\xe9", "Bearer x", "Token"])
def test_a_wrong_token_is_401_never_500(anonymous_api, token):
    anonymous_api.credentials(HTTP_AUTHORIZATION=token)
    response = anonymous_api.get("/api/v1/processlist")
    assert response.status_code == 401


@pytest.mark.parametrize("method,path", WRITES, ids=[f"{m} {p}" for m, p in WRITES])
def test_a_read_only_token_may_not_change_anything(read_only_api, online_host, broker, method, path):
    response = getattr(read_only_api, method)(path, {"name": "cam-ro", "rtsp_endpoint": "rtsp://127.0.0.1/x",
                                                     "host": "edge-a"} if method != "get" else None, format="json")
    assert response.status_code == 403, response.content
    assert response.json() == {"code": 403, "message": "This token may only read, not change anything."}
    assert not Camera.objects.exists() and not Operation.objects.exists() and not EdgeSettings.objects.exists()
    assert broker.queues() == set()


@pytest.mark.parametrize("method,path", READS, ids=[f"{m} {p}" for m, p in READS])
def test_a_read_only_token_may_read(read_only_api, method, path):
    response = getattr(read_only_api, method)(path)
    assert response.status_code in (200, 400, 404), response.content  # sample paths name nothing that exists
    assert response.status_code != 403


def test_a_read_only_token_sees_the_cameras_an_operator_connected(api, read_only_api, online_host, broker):
    connect(api)
    assert [c["name"] for c in read_only_api.get("/api/v1/processlist").json()] == ["front-door"]
    assert read_only_api.post("/api/v1/process/front-door/stop").status_code == 403
    assert Camera.objects.get().desired_state == "running"


@override_settings(EDGEPROXY_AUTH=False)
def test_with_auth_off_anyone_may_call(anonymous_api, online_host, broker):
    assert anonymous_api.get("/api/v1/processlist").status_code == 200
    assert connect(anonymous_api).status_code == 202
