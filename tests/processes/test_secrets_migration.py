"""Migration 0004_secrets_at_rest on an existing database (SQLite, as the embedded default makes it).

Before it: a camera with an RTMP URL in clear and a DRF API token in clear. After it: the URL is
encrypted and masked, the token is stored hashed only and still works.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

from tests.support.services import REPO

RTMP_URL = "rtmp://pub:Old-rtmp-pw@10.0.0.5/app/OldStreamKey123"
TOKEN = "0123456789abcdef0123456789abcdef01234567"  # a DRF token: 40 hex characters


def _manage(env: dict, *args: str) -> str:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_existing_rtmp_urls_are_encrypted_and_plain_tokens_hashed(tmp_path):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("EDGEPROXY_", "DJANGO_", "DATABASE_"))},
           "EDGEPROXY_STATE_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "edgeproxy.settings"}
    _manage(env, "migrate", "auth", "-v0")
    _manage(env, "migrate", "authtoken", "-v0")
    _manage(env, "migrate", "processes", "0003", "-v0")
    _manage(env, "shell", "-v0", "-c", f"""
from django.contrib.auth.models import User
from django.db import connection
from rest_framework.authtoken.models import Token
from processes.models import EdgeHost
Token.objects.create(user=User.objects.create(username="old-client"), key="{TOKEN}")
host = EdgeHost.objects.create(name="old-host", queue="host.old-host")
with connection.cursor() as cursor:
    cursor.execute("INSERT INTO processes_camera (id, name, rtsp_endpoint_encrypted, rtsp_endpoint_masked, "
                   "rtmp_endpoint, rtsp_transport, image_tag, host_id, desired_state, status, container_id, state, "
                   "logs, storing, created, modified) VALUES ('0123456789abcdef0123456789abcdef', 'old-cam', 'x', "
                   "'rtsp://h/x', %s, 'tcp', 'edgeproxy/camera:0.0.9', %s, 'running', 'running', '', '{{}}', '{{}}', "
                   "0, '2026-01-01', '2026-01-01')", ["{RTMP_URL}", host.id])
""")  # noqa: S608 - a fixed script; its SQL takes the values as %s parameters
    _manage(env, "migrate", "-v0")

    database = sqlite3.connect(tmp_path / "edgeproxy.sqlite3")
    dump = "\n".join(database.iterdump())
    assert "Old-rtmp-pw" not in dump and "OldStreamKey123" not in dump
    assert TOKEN not in dump
    assert database.execute("SELECT count(*) FROM authtoken_token").fetchone() == (0,)
    (masked,) = database.execute("SELECT rtmp_endpoint_masked FROM processes_camera WHERE name = 'old-cam'").fetchone()
    assert masked == "rtmp://pub:***@10.0.0.5/app/***"
    checked = json.loads(_manage(env, "shell", "-v0", "-c", f"""
import json
from django.test import RequestFactory
from edgeproxy.api.auth import ApiTokenAuthentication
from edgeproxy import crypto
from processes.models import Camera
user, _ = ApiTokenAuthentication().authenticate(RequestFactory().get("/", HTTP_AUTHORIZATION="Token {TOKEN}"))
rtmp_url = crypto.decrypt(Camera.objects.get(name="old-cam").rtmp_endpoint_encrypted)
print(json.dumps({{"user": user.username, "rtmp_url": rtmp_url}}))
""").strip().splitlines()[-1])
    assert checked == {"user": "old-client", "rtmp_url": RTMP_URL}
