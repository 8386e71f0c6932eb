"""A registry must not steer the control plane to other servers, and read-only tokens cause no call.

Real HTTP servers on loopback: a "registry" that answers as told (401 with a token realm, redirects)
and an "elsewhere" server that records every request it gets. Whatever the registry says, nothing
reaches elsewhere; a read-only token reaches not even the registry.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from tests.support.services import free_port

REPOSITORY = "edgeproxy/steered"


class Recorder:
    """An HTTP server on 127.0.0.1:<free port> that records each request and answers with ``reply``."""

    def __init__(self, reply):
        self.requests: list[str] = []
        self.reply = reply
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # http.server's name
                recorder.requests.append(self.path)
                status, headers, body = recorder.reply(self.path)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def _tags() -> tuple[int, dict, bytes]:
    return 200, {"Content-Type": "application/json"}, json.dumps({"name": REPOSITORY, "tags": ["1.0.0"]}).encode()


@pytest.fixture
def elsewhere():
    server = Recorder(lambda path: _tags())  # would hand out a token or tags, if anyone asked
    yield server
    server.stop()


@pytest.fixture
def registry_as(system):
    """Start a fake registry with the given behaviour and configure it as the system's registry."""
    servers = []

    def start(reply) -> Recorder:
        server = Recorder(reply)
        servers.append(server)
        assert system.post("/api/v1/settings", {"registry_url": server.url}).status_code == 200
        return server

    yield start
    assert system.post("/api/v1/settings", {"registry_url": ""}).status_code == 200
    for server in servers:
        server.stop()


def remote_versions(system, token: str | None = None):
    headers = {"Authorization": f"Token {token}"} if token else {}
    response = system.get(f"/api/v1/devicedockerimages?tag={REPOSITORY}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["remote_versions"]


def _challenge(realm: str) -> tuple[int, dict, bytes]:
    return 401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="registry"'}, b"{}"


@pytest.mark.parametrize("realm_host", ["127.0.0.1", "localhost"])
def test_a_token_realm_on_another_host_is_not_followed(system, registry_as, elsewhere, realm_host):
    registry = registry_as(lambda path: _challenge(f"http://{realm_host}:{elsewhere.port}/token"))
    assert remote_versions(system) is None
    assert registry.requests, "the registry was asked"
    assert elsewhere.requests == []


def test_redirects_to_another_host_are_not_followed(system, registry_as, elsewhere):
    def reply(path):
        if path.startswith("/token"):  # its own token service, which redirects elsewhere
            return 302, {"Location": f"{elsewhere.url}/token?stolen=1"}, b""
        return _challenge(f"http://127.0.0.1:{registry.port}/token")

    registry = registry_as(reply)
    assert remote_versions(system) is None
    assert any(p.startswith("/token") for p in registry.requests)
    # And the tags list itself redirected elsewhere.
    registry.reply = lambda path: (302, {"Location": f"{elsewhere.url}{path}"}, b"")
    assert remote_versions(system) is None
    assert elsewhere.requests == []


def test_a_token_service_on_the_registry_s_own_host_still_works(system, registry_as):
    def reply(path):
        if path.startswith("/token"):
            return 200, {"Content-Type": "application/json"}, b'{"token": "anonymous-token"}'
        return _tags() if len(registry.requests) > 2 else _challenge(f"http://127.0.0.1:{registry.port}/token")

    registry = registry_as(reply)
    assert remote_versions(system) == ["1.0.0"]
    assert [p.split("?")[0] for p in registry.requests] == [f"/v2/{REPOSITORY}/tags/list", "/token",
                                                             f"/v2/{REPOSITORY}/tags/list"]


def test_a_read_only_token_causes_no_registry_call(system, registry_as):
    registry = registry_as(lambda path: _tags())
    for path in (f"/api/v1/devicedockerimages?tag={REPOSITORY}", f"/api/v1/settings/dockerimageslocally/{REPOSITORY}"):
        reply = requests.get(system.base_url + path, headers={"Authorization": f"Token {system.readonly_token}"},
                             timeout=10)
        assert reply.status_code == 200, reply.text
        assert reply.json()["remote_versions"] is None
    assert registry.requests == []
    # The same request with a token that may change things does ask it (the test can see a call).
    assert remote_versions(system) == ["1.0.0"]
    assert len(registry.requests) == 1
