"""A full scenario with secrets, then everything it produced is searched for them.

Connect a camera with a password in its URL, stop, start and delete it; connect one with a wrong
password (it fails); connect one with an RTMP target holding a password and a stream key; set the
edge secret through both settings routes (and once in a request that fails validation). Then grep:
every API response (camera logs base64-decoded; admin and read-only tokens), the admin pages and
change forms, the dashboard pages, every process log of the system, the camera containers'
``docker inspect`` and logs, every Redis key and value, every Redis command sent while it ran
(Celery messages decoded), and the database rows: the RTSP and RTMP passwords, the stream key, the
edge secret and the API tokens appear nowhere, and are encrypted (tokens: hashed) at rest.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import threading

import psycopg
import pytest
import redis
import requests

from tests.support.services import free_port

pytestmark = pytest.mark.docker

PASSWORD = "S3cretPass-9x"  # the password_camera fixture's
WRONG_PASSWORD = "Wr0ngPass-4z"
EDGE_SECRET = "EdgeS3cret-q7w"
RTMP_PASSWORD = "Rtmp-Publ1sh-pw"
STREAM_KEY = "live_8f3k2m9q7z"
SECRETS = (PASSWORD, WRONG_PASSWORD, EDGE_SECRET, RTMP_PASSWORD, STREAM_KEY)
_B64_BODY = re.compile(rb'body\\?"\s*:\s*\\?"([A-Za-z0-9+/=]{8,})')


def decoded_bodies(raw: bytes) -> list[bytes]:
    """Celery messages carry their body base64-encoded: decode every one found in ``raw``."""
    bodies = []
    for match in _B64_BODY.finditer(raw):
        try:
            bodies.append(base64.b64decode(match.group(1)))
        except ValueError:
            continue
    return bodies


def decoded_logs(body) -> list[bytes]:
    """The base64 ``logs.stdout/stderr`` of every camera record in a JSON body."""
    found = []
    if isinstance(body, dict):
        for key, item in body.items():
            if key in ("stdout", "stderr") and isinstance(item, str):
                found.append(base64.b64decode(item))
            else:
                found.extend(decoded_logs(item))
    elif isinstance(body, list):
        for item in body:
            found.extend(decoded_logs(item))
    return found


class RedisMonitor:
    """Every command the Redis server receives while running (``MONITOR``), kept as bytes."""

    def __init__(self, url: str):
        self.client = redis.Redis.from_url(url)
        self.commands: list[bytes] = []
        self._monitor = self.client.monitor()
        self._monitor.__enter__()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                command = self._monitor.next_command()
            except (redis.RedisError, OSError, ValueError):
                return
            self.commands.append(command["command"].encode("utf-8", "backslashreplace"))

    def stop(self) -> bytes:
        self._stop.set()
        self.client.set("edgeproxy:test:monitor-stop", "1", ex=5)  # wakes the reader
        self._thread.join(5)
        with contextlib.suppress(Exception):
            self._monitor.connection.disconnect()
        return b"\n".join(self.commands)


def redis_dump(client: redis.Redis) -> bytes:
    parts = []
    for key in client.scan_iter("*"):
        kind = client.type(key).decode()
        parts.append(key)
        if kind == "string":
            parts.append(client.get(key) or b"")
        elif kind == "list":
            parts.extend(client.lrange(key, 0, -1))
        elif kind == "hash":
            parts.extend(k + b"=" + v for k, v in client.hgetall(key).items())
        elif kind == "set":
            parts.extend(client.smembers(key))
        elif kind == "zset":
            parts.extend(m for m, _ in client.zrange(key, 0, -1, withscores=True))
        elif kind == "stream":
            for _, fields in client.xrange(key, count=50):
                parts.extend(k + b"=" + v for k, v in fields.items())
    return b"\n".join(parts)


def admin_pages(system) -> list[str]:
    """Log in to the admin with a session and fetch every list page and the change pages."""
    system._manage("create_api_token", "auditor", "--superuser", "--password", "Audit-pw-5521")
    session = requests.Session()
    login = session.get(system.base_url + "/admin/login/", timeout=10)
    assert login.status_code == 200
    reply = session.post(system.base_url + "/admin/login/?next=/admin/", timeout=10, data={
        "username": "auditor", "password": "Audit-pw-5521", "next": "/admin/",
        "csrfmiddlewaretoken": session.cookies["csrftoken"]}, headers={"Referer": system.base_url + "/admin/login/"})
    assert reply.status_code == 200 and "Log out" in reply.text, reply.text[:500]
    pages = []
    for path in ("/admin/processes/camera/", "/admin/processes/operation/", "/admin/processes/edgehost/",
                 "/admin/settings_app/edgesettings/", "/admin/processes/camera/?q=audit"):
        page = session.get(system.base_url + path, timeout=10)
        assert page.status_code == 200, path
        pages.append(page.text)
        for change in sorted(set(re.findall(r'href="(/admin/[a-z_]+/[a-z]+/[^"/]+/change/)[^"]*"', page.text)))[:20]:
            detail = session.get(system.base_url + change, timeout=10)
            assert detail.status_code == 200, change
            pages.append(detail.text)
    assert any("audit-cam" in p for p in pages)
    assert any("rtsp://admin:***@" in p for p in pages)  # the masked URL is what the admin shows
    assert any("rtmp://pub:***@" in p and "/app/***" in p for p in pages)  # the admin's change form of audit-rtmp
    # The dashboard, with the same session: overview, every camera's page, operations, settings.
    for path in ("/", "/cameras/audit-cam/", "/cameras/audit-rtmp/", "/cameras/audit-wrong/", "/operations/",
                 "/settings/", "/connect/"):
        page = session.get(system.base_url + path, timeout=10)
        assert page.status_code == 200, path
        pages.append(page.text)
    assert any("rtmp://pub:***@" in p for p in pages[-6:]), "the dashboard shows the masked RTMP URL"
    return pages


def test_no_secret_in_any_output(system, password_camera, docker_client, redis_server):
    assert PASSWORD in password_camera.url()
    monitor = RedisMonitor(redis_server.url)
    responses: list[requests.Response] = []

    def call(method, path, body=None, expect=(200,)):
        response = system.request(method, path, json=body)
        assert response.status_code in expect, (path, response.status_code, response.text[:500])
        responses.append(response)
        return response

    try:
        # The edge secret, through both routes, and once in a request that fails validation.
        settings = call("POST", f"/api/v1/settings/overwrite/edge-key-1:{EDGE_SECRET}").json()
        assert settings["edge_key"] == "edge-key-1" and settings["edge_secret"] == "***"
        call("POST", "/api/v1/settings", {"edge_key": "edge-key-1", "edge_secret": EDGE_SECRET})
        call("POST", f"/api/v1/settings/overwrite/{'k' * 300}:{EDGE_SECRET}", expect=(400,))

        # A camera with the right password: connect, stream, stop, start.
        connected = call("POST", "/api/v1/process?wait=30",
                         {"name": "audit-cam", "rtsp_endpoint": password_camera.url()})
        assert connected.json()["rtsp_endpoint"] == f"rtsp://admin:***@127.0.0.1:{password_camera.port}/test"
        system.wait_camera("audit-cam", lambda c: (c["stream"] or {}).get("state") == "streaming", 30)
        # And one with a wrong password: it runs, the camera refuses it, the error is visible.
        call("POST", "/api/v1/process?wait=30", {"name": "audit-wrong",
                                                 "rtsp_endpoint": password_camera.url(password=WRONG_PASSWORD)})
        # And one with an RTMP target (nobody listens: the camera logs its connection failures).
        rtmp = call("POST", "/api/v1/process?wait=30", {
            "name": "audit-rtmp", "rtsp_endpoint": password_camera.url(),
            "rtmp_endpoint": f"rtmp://pub:{RTMP_PASSWORD}@127.0.0.1:{free_port()}/app/{STREAM_KEY}"})
        assert rtmp.json()["rtmp_endpoint"].startswith("rtmp://pub:***@127.0.0.1:")
        assert rtmp.json()["rtmp_endpoint"].endswith("/app/***")
        system.wait_camera("audit-rtmp", lambda c: (c["stream"] or {}).get("rtmp_enabled")
                           and (c["stream"] or {}).get("rtmp_error"), 40,
                           message="the camera read its RTMP URL file and tried to connect")
        system.wait_camera("audit-wrong", lambda c: (c["stream"] or {}).get("state") in ("error", "reconnecting")
                                   and (c["stream"] or {}).get("last_error"), 40, message="auth failure reported")

        op_id = connected.json()["operation"]["id"]
        for path in ("/api/v1/process/audit-cam", "/api/v1/process/info/audit-cam", "/api/v1/process/audit-wrong",
                     "/api/v1/processlist", "/api/v1/processupgrades", "/api/v1/processupgrades/findrtspupgrades",
                     "/api/v1/hosts", "/api/v1/hosts/edge-a", f"/api/v1/tasks/{op_id}", "/api/v1/settings",
                     "/api/v1/settings/", "/api/v1/alldockerimages", "/api/v1/process/audit-rtmp",
                     "/api/v1/process/info/audit-rtmp"):
            call("GET", path)
            # The same with a read-only token.
            viewer = requests.get(system.base_url + path, headers={"Authorization": f"Token {system.readonly_token}"},
                                  timeout=10)
            assert viewer.status_code == 200, (path, viewer.text[:300])
            responses.append(viewer)
        containers = [docker_client.containers.get(system.camera(n)["container_id"])
                      for n in ("audit-cam", "audit-wrong", "audit-rtmp")]
        inspected = [json.dumps(c.attrs) for c in containers]
        container_logs = [c.logs(stdout=True, stderr=True) for c in containers]

        call("POST", "/api/v1/process/audit-cam/stop?wait=30")
        call("POST", "/api/v1/process/audit-cam/start?wait=30")
        call("DELETE", "/api/v1/process/stop/audit-wrong?wait=30")
        pages = admin_pages(system)
        call("DELETE", "/api/v1/process/audit-cam?wait=30")
        call("DELETE", "/api/v1/process/audit-wrong?wait=30")
        call("DELETE", "/api/v1/process/audit-rtmp?wait=30")
    finally:
        commands = monitor.stop()
        system.post("/api/v1/settings", {"edge_key": "", "edge_secret": ""})

    with psycopg.connect(system.database_url) as conn:
        rows = [repr(row) for table in ("processes_camera", "processes_operation", "settings_app_edgesettings",
                                        "processes_edgehost", "knox_authtoken", "authtoken_token", "auth_user",
                                        "django_session")
                for row in conn.execute(f"SELECT * FROM {table}").fetchall()]  # noqa: S608 - fixed names
    stored = redis_dump(redis_server.client())
    haystacks = {
        "API responses": "\n".join(r.text for r in responses).encode(),
        "camera logs in responses": b"\n".join(b for r in responses if r.headers.get("Content-Type", "").startswith(
            "application/json") for b in decoded_logs(r.json())),
        "admin pages": "\n".join(pages).encode(),
        "process logs": system.logs().encode(),
        "docker inspect": "\n".join(inspected).encode(),
        "container logs": b"\n".join(container_logs),
        "redis keys and values": stored + b"\n".join(decoded_bodies(stored)),
        "redis commands (monitor)": commands + b"\n".join(decoded_bodies(commands)),
        "database rows": "\n".join(rows).encode(),
    }
    assert len(commands) > 50 and decoded_bodies(commands), "the monitor saw the Celery traffic"
    assert b"edge.ensure_running" in commands + b"".join(decoded_bodies(commands))
    leaks = [(where, secret) for where, data in haystacks.items() for secret in SECRETS if secret.encode() in data]
    assert not leaks, leaks
    # API tokens: in no row of the database (stored hashed), and both still work.
    tokens = {"admin token": system.token, "read-only token": system.readonly_token}
    assert not [name for name, token in tokens.items() if token.encode() in haystacks["database rows"]]
    assert all(requests.get(system.base_url + "/api/v1/hosts", headers={"Authorization": f"Token {t}"},
                            timeout=10).status_code == 200 for t in tokens.values())
